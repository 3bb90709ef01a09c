package awsconfig

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awstest"
)

// vars is an environment for fromEnv.
type vars map[string]string

func (v vars) get(k string) string { return v[k] }

func TestFromEnvSettings(t *testing.T) {
	t.Parallel()
	static := vars{"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret"}
	with := func(extra vars) vars {
		v := vars{}
		for k, x := range static {
			v[k] = x
		}
		for k, x := range extra {
			v[k] = x
		}
		return v
	}
	for _, tc := range []struct {
		name     string
		env      vars
		region   string
		endpoint string
		attempts int
	}{
		{name: "AWS_REGION first", env: with(vars{"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-west-2"}), region: "eu-west-1"},
		{name: "else AWS_DEFAULT_REGION", env: with(vars{"AWS_DEFAULT_REGION": "us-west-2"}), region: "us-west-2"},
		{name: "no region", env: static},
		{name: "endpoint", env: with(vars{"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}), endpoint: "http://127.0.0.1:5000"},
		{name: "endpoint ignored", env: with(vars{"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"})},
		{name: "max attempts", env: with(vars{"AWS_MAX_ATTEMPTS": "7"}), attempts: 7},
		{name: "FIPS off is fine", env: with(vars{"AWS_USE_FIPS_ENDPOINT": "false"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := fromEnv(t.Context(), tc.env.get, nil)
			require.NoError(t, err)
			require.Equal(t, tc.region, cfg.Region)
			require.Equal(t, tc.endpoint, aws.ToString(cfg.BaseEndpoint))
			require.Equal(t, tc.attempts, cfg.RetryMaxAttempts)
			require.Equal(t, aws.RetryModeAdaptive, cfg.RetryMode)
			got, err := cfg.Credentials.Retrieve(t.Context())
			require.NoError(t, err)
			require.Equal(t, "AKID", got.AccessKeyID)
		})
	}
}

func TestFromEnvRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  vars
		want string
	}{
		{vars{"AWS_PROFILE": "dev"}, "AWS_PROFILE is set"},
		{vars{"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token", "AWS_ROLE_ARN": "arn:aws:iam::1:role/r"}, "AWS_WEB_IDENTITY_TOKEN_FILE is set"},
		{vars{"AWS_CA_BUNDLE": "/nonexistent/ca.pem"}, "no such file"},
		{vars{"AWS_CA_BUNDLE": "/dev/null"}, "no PEM certificate"},
		{vars{"AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:1"}, "AWS_ENDPOINT_URL_SQS is set"},
		{vars{"AWS_USE_FIPS_ENDPOINT": "true"}, "AWS_USE_FIPS_ENDPOINT is set"},
		{vars{"AWS_USE_DUALSTACK_ENDPOINT": "TRUE"}, "AWS_USE_DUALSTACK_ENDPOINT is set"},
		{vars{"AWS_MAX_ATTEMPTS": "0"}, "AWS_MAX_ATTEMPTS"},
		{vars{"AWS_ACCESS_KEY_ID": "AKID"}, "set both"},
		{vars{"AWS_EC2_METADATA_DISABLED": "true"}, "none configured"},
		{vars{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://10.1.2.3/creds"}, "plain http only to loopback"},
		{vars{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "ftp://127.0.0.1/creds"}, "want http or https"},
		{vars{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http:///creds"}, "no host"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			_, err := fromEnv(t.Context(), tc.env.get, nil)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestFromEnvCredentialSources(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  vars
		want aws.CredentialsProvider
	}{
		{"ECS task role", vars{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/x"}, &endpointcreds.Provider{}},
		{"full URI over https", vars{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "https://creds.example.com/x"}, &endpointcreds.Provider{}},
		{"EKS Pod Identity", vars{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials"}, &endpointcreds.Provider{}},
		{"instance role", vars{}, &ec2rolecreds.Provider{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := fromEnv(t.Context(), tc.env.get, nil)
			require.NoError(t, err)
			cache, ok := cfg.Credentials.(*aws.CredentialsCache)
			require.True(t, ok, "%T is cached", cfg.Credentials)
			require.True(t, cache.IsCredentialsProvider(tc.want), "want a %T", tc.want)
		})
	}
}

// TestFromEnvCABundle: with AWS_CA_BUNDLE the clients trust its
// certificates (here a test server's self-signed one, which the system's
// roots do not hold).
func TestFromEnvCABundle(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))
	get := func(c aws.HTTPClient) error {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
		require.NoError(t, err)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	require.Error(t, get(http.DefaultClient), "the system's roots do not trust the test server")
	cfg, err := fromEnv(t.Context(), vars{"AWS_CA_BUNDLE": bundle, "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s"}.get, nil)
	require.NoError(t, err)
	require.NoError(t, get(cfg.HTTPClient))
}

// TestFromEnvContainerCredentials fetches credentials from a container
// credentials endpoint on loopback, with the token from a file, and signs
// requests with them against the test AWS endpoint.
func TestFromEnvContainerCredentials(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]string{
			"AccessKeyId": "ASIATEST", "SecretAccessKey": "secret", "Token": "session",
			"Expiration": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		})
	}))
	t.Cleanup(srv.Close)
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("rotated-token\n"), 0o600))
	env := vars{
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     srv.URL + "/creds",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN":      "stale-token",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokenFile,
		"AWS_REGION":                             awstest.Region,
	}
	if ep := awstest.Endpoint(t); ep != "" && awstest.IsMoto(t) {
		env["AWS_ENDPOINT_URL"] = ep
	}
	cfg, err := fromEnv(t.Context(), env.get, nil)
	require.NoError(t, err)
	got, err := cfg.Credentials.Retrieve(t.Context())
	require.NoError(t, err)
	require.Equal(t, "ASIATEST", got.AccessKeyID)
	require.Equal(t, "session", got.SessionToken)
	mu.Lock()
	require.Equal(t, []string{"rotated-token"}, auth, "the token file wins over the variable")
	mu.Unlock()

	if env["AWS_ENDPOINT_URL"] == "" {
		t.Skip("no emulator to sign requests against")
	}
	c := sqs.NewFromConfig(cfg)
	ctx := context.Background()
	_, err = c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(awstest.Name(t))})
	require.NoError(t, err, "a client of the configuration signs with the fetched credentials")
}
