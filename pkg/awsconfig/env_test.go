package awsconfig

import (
	"cmp"
	"context"
	"encoding/json"
	"encoding/pem"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"
)

// vars is an environment for fromEnv.
type vars map[string]string

func (v vars) env() environ {
	return environ{
		get: func(k string) string { return v[k] },
		all: func() []string {
			var kv []string
			for k, x := range v {
				kv = append(kv, k+"="+x)
			}
			return kv
		},
	}
}

func (v vars) with(extra vars) vars {
	out := maps.Clone(v)
	maps.Copy(out, extra)
	return out
}

var static = vars{"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret"}

func TestFromEnvSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		env      vars
		check    func(*testing.T, aws.Config)
		akid     string
		region   string
		endpoint string
	}{
		{name: "AWS_REGION first", env: static.with(vars{"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-west-2"}), region: "eu-west-1"},
		{name: "else AWS_DEFAULT_REGION", env: static.with(vars{"AWS_DEFAULT_REGION": "us-west-2"}), region: "us-west-2"},
		{name: "no region", env: static},
		{name: "endpoint", env: static.with(vars{"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}), endpoint: "http://127.0.0.1:5000"},
		{name: "endpoint ignored", env: static.with(vars{"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "TRUE"})},
		{name: "max attempts", env: static.with(vars{"AWS_MAX_ATTEMPTS": "7"}), check: func(t *testing.T, c aws.Config) {
			require.Equal(t, 7, c.RetryMaxAttempts)
		}},
		{name: "max attempts 0 is the default", env: static.with(vars{"AWS_MAX_ATTEMPTS": "0"}), check: func(t *testing.T, c aws.Config) {
			require.Zero(t, c.RetryMaxAttempts)
		}},
		{name: "checksums and account endpoints", env: static.with(vars{"AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_REQUIRED",
			"AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required", "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled"}),
			check: func(t *testing.T, c aws.Config) {
				require.Equal(t, aws.RequestChecksumCalculationWhenRequired, c.RequestChecksumCalculation)
				require.Equal(t, aws.ResponseChecksumValidationWhenRequired, c.ResponseChecksumValidation)
				require.Equal(t, aws.AccountIDEndpointMode(aws.AccountIDEndpointModeDisabled), c.AccountIDEndpointMode)
			}},
		{name: "FIPS off is fine", env: static.with(vars{"AWS_USE_FIPS_ENDPOINT": "false"})},
		{name: "key aliases", env: vars{"AWS_ACCESS_KEY": "ALIAS", "AWS_SECRET_KEY": "s"}, akid: "ALIAS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := fromEnv(t.Context(), tc.env.env(), nil)
			require.NoError(t, err)
			require.Equal(t, tc.region, cfg.Region)
			require.Equal(t, tc.endpoint, aws.ToString(cfg.BaseEndpoint))
			require.Equal(t, aws.RetryModeAdaptive, cfg.RetryMode)
			require.NotNil(t, cfg.Logger, "the SDK's warnings are logged")
			if tc.check != nil {
				tc.check(t, cfg)
			}
			got, err := cfg.Credentials.Retrieve(t.Context())
			require.NoError(t, err)
			require.Equal(t, cmp.Or(tc.akid, "AKID"), got.AccessKeyID)
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
		{vars{"AWS_DEFAULT_PROFILE": "dev"}, "AWS_DEFAULT_PROFILE is set"},
		{vars{"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token", "AWS_ROLE_ARN": "arn:aws:iam::1:role/r"}, "AWS_WEB_IDENTITY_TOKEN_FILE is set"},
		{vars{"AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:1"}, "AWS_ENDPOINT_URL_SQS is set"},
		{vars{"AWS_ENDPOINT_URL_CLOUDWATCH": "http://127.0.0.1:1"}, "AWS_ENDPOINT_URL_CLOUDWATCH is set"},
		{vars{"AWS_EC2_METADATA_V1_DISABLED": "true"}, "AWS_EC2_METADATA_V1_DISABLED is set"},
		{vars{"AWS_USE_FIPS_ENDPOINT": "true"}, "AWS_USE_FIPS_ENDPOINT is set"},
		{vars{"AWS_USE_DUALSTACK_ENDPOINT": "TRUE"}, "AWS_USE_DUALSTACK_ENDPOINT is set"},
		{vars{"AWS_USE_FIPS_ENDPOINT": "1"}, "want true or false"},
		{vars{"AWS_REQUEST_CHECKSUM_CALCULATION": "always"}, "want one of when_required, when_supported"},
		{vars{"AWS_CA_BUNDLE": "/nonexistent/ca.pem"}, "no such file"},
		{vars{"AWS_CA_BUNDLE": "/dev/null"}, "no PEM certificate"},
		{vars{"AWS_MAX_ATTEMPTS": "-1"}, "AWS_MAX_ATTEMPTS"},
		{vars{"AWS_ACCESS_KEY_ID": "AKID"}, "set both"},
		{vars{"AWS_EC2_METADATA_DISABLED": "true"}, "none configured"},
		{vars{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://10.1.2.3/creds"}, "plain http only to loopback"},
		{vars{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "ftp://127.0.0.1/creds"}, "want http or https"},
		{vars{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http:///creds"}, "no host"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			_, err := fromEnv(t.Context(), tc.env.env(), nil)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// The source is chosen by what is configured, in the SDK's order: keys,
// the ECS task role (relative URI), a full URI, the instance role.
func TestFromEnvCredentialSources(t *testing.T) {
	t.Parallel()
	relative := vars{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/x"}
	full := vars{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials"}
	for _, tc := range []struct {
		name string
		env  vars
		want aws.CredentialsProvider
	}{
		{"keys over the task role", static.with(relative), nil},
		{"ECS task role over a full URI", relative.with(full), &endpointcreds.Provider{}},
		{"EKS Pod Identity", full, &endpointcreds.Provider{}},
		{"full URI over https", vars{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "https://creds.example.com/x"}, &endpointcreds.Provider{}},
		{"instance role", vars{}, &ec2rolecreds.Provider{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := fromEnv(t.Context(), tc.env.env(), nil)
			require.NoError(t, err)
			if tc.want == nil {
				got, err := cfg.Credentials.Retrieve(t.Context())
				require.NoError(t, err)
				require.Equal(t, "AKID", got.AccessKeyID)
				return
			}
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
	cfg, err := fromEnv(t.Context(), static.with(vars{"AWS_CA_BUNDLE": bundle}).env(), nil)
	require.NoError(t, err)
	require.NoError(t, get(cfg.HTTPClient))
}

// credentialServer is a container credentials endpoint: it records the
// Authorization header of each fetch and hands out credentials that are
// always within the cache's expiry window, so each Retrieve fetches.
func credentialServer(t *testing.T) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]string{
			"AccessKeyId": "ASIATEST", "SecretAccessKey": "secret", "Token": "session",
			"Expiration": time.Now().Add(time.Minute).UTC().Format(time.RFC3339),
		})
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), auth...)
	}
}

// The ECS task role: the relative URI is fetched from the ECS credentials
// endpoint (pointed at a local server here, so not parallel).
func TestFromEnvTaskRole(t *testing.T) {
	require.Equal(t, "http://169.254.170.2", ecsCredentialsEndpoint, "the ECS container credentials endpoint")
	srv, auth := credentialServer(t)
	old := ecsCredentialsEndpoint
	ecsCredentialsEndpoint = srv.URL
	t.Cleanup(func() { ecsCredentialsEndpoint = old })
	cfg, err := fromEnv(t.Context(), vars{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc"}.env(), nil)
	require.NoError(t, err)
	got, err := cfg.Credentials.Retrieve(t.Context())
	require.NoError(t, err)
	require.Equal(t, "ASIATEST", got.AccessKeyID)
	require.Equal(t, []string{"/v2/credentials/abc "}, auth())
}

// TestFromEnvContainerCredentials fetches credentials from a full URI on
// loopback with the token from a file, read again at each fetch, and signs
// requests with them.
func TestFromEnvContainerCredentials(t *testing.T) {
	t.Parallel()
	srv, auth := credentialServer(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("token-1\n"), 0o600))

	var mu sync.Mutex
	var signed []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		signed = append(signed, r.Header.Get("Authorization"), r.Header.Get("X-Amz-Security-Token"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = w.Write([]byte(`{"QueueUrl":"http://127.0.0.1/123456789012/q"}`))
	}))
	t.Cleanup(api.Close)

	env := vars{
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     srv.URL + "/creds",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN":      "stale-token",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokenFile,
		"AWS_REGION":                             "eu-west-1",
		"AWS_ENDPOINT_URL":                       api.URL,
	}
	cfg, err := fromEnv(t.Context(), env.env(), nil)
	require.NoError(t, err)
	got, err := cfg.Credentials.Retrieve(t.Context())
	require.NoError(t, err)
	require.Equal(t, "ASIATEST", got.AccessKeyID)
	require.Equal(t, "session", got.SessionToken)
	require.NoError(t, os.WriteFile(tokenFile, []byte("token-2"), 0o600))
	_, err = cfg.Credentials.Retrieve(t.Context())
	require.NoError(t, err)
	require.Equal(t, []string{"/creds token-1", "/creds token-2"}, auth(), "the file wins over the variable and is read at each fetch")

	_, err = sqs.NewFromConfig(cfg).GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: aws.String("q")})
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, signed, 2)
	require.True(t, strings.Contains(signed[0], "Credential=ASIATEST/") && strings.Contains(signed[0], "/eu-west-1/sqs/aws4_request"),
		"signed with the fetched key in the region: %s", signed[0])
	require.Equal(t, "session", signed[1])
}
