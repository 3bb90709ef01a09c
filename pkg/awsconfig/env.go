package awsconfig

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/smithy-go/logging"
	"github.com/aws/smithy-go/middleware"
)

// The container credentials endpoints (the SDK's): ECS's for a relative URI
// (a variable so that tests can point it at a local server), and the hosts
// a full URI may name over plain http besides loopback.
var ecsCredentialsEndpoint = "http://169.254.170.2"

var containerHosts = []net.IP{
	net.ParseIP("169.254.170.2"),
	net.ParseIP("169.254.170.23"), // EKS Pod Identity
	net.ParseIP("fd00:ec2::23"),
}

// unsupported are the settings the SDK's default loader honours and fromEnv
// cannot, each with what it asks for; any AWS_ENDPOINT_URL_<SERVICE> too.
var unsupported = []struct{ env, what string }{
	{"AWS_PROFILE", "a named profile of the shared config files"},
	{"AWS_DEFAULT_PROFILE", "a named profile of the shared config files"},
	{"AWS_WEB_IDENTITY_TOKEN_FILE", "web identity credentials (they need STS)"},
	{"AWS_EC2_METADATA_SERVICE_ENDPOINT", "an instance metadata endpoint"},
	{"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "an instance metadata endpoint mode"},
	{"AWS_EC2_METADATA_V1_DISABLED", "instance metadata settings"},
}

// unsupportedTrue are boolean settings fromEnv cannot honour when true.
var unsupportedTrue = []struct{ env, what string }{
	{"AWS_USE_FIPS_ENDPOINT", "FIPS endpoints"},
	{"AWS_USE_DUALSTACK_ENDPOINT", "dual-stack endpoints"},
}

// environ is the process environment fromEnv reads: one variable, and all
// of them (os.Getenv and os.Environ).
type environ struct {
	get func(string) string
	all func() []string
}

// fromEnv is the configuration of a -tags jobfleet_ecs build: the
// environment and the container's or instance's role, without the SDK's
// config package (see the package doc). It lives outside that build's
// file so every build tests it; the linker drops it where it is unused.
func fromEnv(ctx context.Context, env environ, apiOpts []func(*middleware.Stack) error) (aws.Config, error) {
	getenv := env.get
	for _, u := range unsupported {
		if getenv(u.env) != "" {
			return aws.Config{}, notInECSBuild(u.env, u.what)
		}
	}
	for _, kv := range env.all() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_ENDPOINT_URL_") {
			return aws.Config{}, notInECSBuild(k, "a service-specific endpoint")
		}
	}
	for _, u := range unsupportedTrue {
		on, err := boolEnv(getenv, u.env)
		if err != nil {
			return aws.Config{}, err
		}
		if on {
			return aws.Config{}, notInECSBuild(u.env, u.what)
		}
	}
	cfg := aws.Config{
		Region:     cmp.Or(getenv("AWS_REGION"), getenv("AWS_DEFAULT_REGION")),
		RetryMode:  aws.RetryModeAdaptive,
		APIOptions: apiOpts,
		Logger:     logging.NewStandardLogger(os.Stderr),
	}
	ignore, err := boolEnv(getenv, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
	if err != nil {
		return aws.Config{}, err
	}
	if ep := getenv("AWS_ENDPOINT_URL"); ep != "" && !ignore {
		cfg.BaseEndpoint = aws.String(ep)
	}
	if path := getenv("AWS_CA_BUNDLE"); path != "" {
		client, err := caBundleClient(path)
		if err != nil {
			return aws.Config{}, fmt.Errorf("AWS_CA_BUNDLE=%q: %w", path, err)
		}
		cfg.HTTPClient = client
	}
	if v := getenv("AWS_MAX_ATTEMPTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return aws.Config{}, fmt.Errorf("AWS_MAX_ATTEMPTS=%q: want a whole number (0: the SDK's default)", v)
		}
		cfg.RetryMaxAttempts = n
	}
	if err := enumEnv(getenv, "AWS_REQUEST_CHECKSUM_CALCULATION", &cfg.RequestChecksumCalculation, map[string]aws.RequestChecksumCalculation{
		"when_supported": aws.RequestChecksumCalculationWhenSupported, "when_required": aws.RequestChecksumCalculationWhenRequired}); err != nil {
		return aws.Config{}, err
	}
	if err := enumEnv(getenv, "AWS_RESPONSE_CHECKSUM_VALIDATION", &cfg.ResponseChecksumValidation, map[string]aws.ResponseChecksumValidation{
		"when_supported": aws.ResponseChecksumValidationWhenSupported, "when_required": aws.ResponseChecksumValidationWhenRequired}); err != nil {
		return aws.Config{}, err
	}
	if err := enumEnv(getenv, "AWS_ACCOUNT_ID_ENDPOINT_MODE", &cfg.AccountIDEndpointMode, map[string]aws.AccountIDEndpointMode{
		"preferred": aws.AccountIDEndpointModePreferred, "required": aws.AccountIDEndpointModeRequired,
		"disabled": aws.AccountIDEndpointModeDisabled}); err != nil {
		return aws.Config{}, err
	}
	creds, err := credentialsFromEnv(ctx, getenv, apiOpts)
	if err != nil {
		return aws.Config{}, err
	}
	cfg.Credentials = creds
	return cfg, nil
}

func notInECSBuild(env, what string) error {
	return fmt.Errorf("%s is set: %s is not supported by a -tags jobfleet_ecs build (unset it, or use a default build)", env, what)
}

// boolEnv reads a true/false setting (any case), unset being false; any
// other value is an error, as for the SDK.
func boolEnv(getenv func(string) string, name string) (bool, error) {
	switch v := getenv(name); strings.ToLower(v) {
	case "":
		return false, nil
	case "true":
		return true, nil
	case "false":
		return false, nil
	default:
		return false, fmt.Errorf("%s=%q: want true or false", name, v)
	}
}

// enumEnv sets *dst from a setting with the given values (any case);
// unset leaves it alone.
func enumEnv[T any](getenv func(string) string, name string, dst *T, values map[string]T) error {
	v := getenv(name)
	if v == "" {
		return nil
	}
	x, ok := values[strings.ToLower(v)]
	if !ok {
		return fmt.Errorf("%s=%q: want one of %s", name, v, strings.Join(slices.Sorted(maps.Keys(values)), ", "))
	}
	*dst = x
	return nil
}

// caBundleClient is the SDK's HTTP client trusting the certificates of the
// PEM file at path, instead of the system's, as the SDK's loader does.
func caBundleClient(path string) (aws.HTTPClient, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate in it")
	}
	return awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{}
		}
		tr.TLSClientConfig.RootCAs = pool
	}), nil
}

// credentialsFromEnv picks the credential source the way the SDK's default
// chain does, by what the environment configures (not by trying each).
// Setting one of the two key variables alone is an error here, where the
// SDK would go on to the next source: it is almost always a mistake.
func credentialsFromEnv(ctx context.Context, getenv func(string) string, apiOpts []func(*middleware.Stack) error) (aws.CredentialsProvider, error) {
	id := cmp.Or(getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_ACCESS_KEY"))
	secret := cmp.Or(getenv("AWS_SECRET_ACCESS_KEY"), getenv("AWS_SECRET_KEY"))
	disabled, err := boolEnv(getenv, "AWS_EC2_METADATA_DISABLED")
	if err != nil {
		return nil, err
	}
	switch {
	case id != "" && secret != "":
		return credentials.StaticCredentialsProvider{Value: aws.Credentials{
			AccessKeyID: id, SecretAccessKey: secret, SessionToken: getenv("AWS_SESSION_TOKEN"),
			AccountID: getenv("AWS_ACCOUNT_ID"), Source: "EnvConfigCredentials",
		}}, nil
	case id != "" || secret != "":
		return nil, errors.New("AWS credentials: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither")
	case getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != "":
		return containerCredentials(ecsCredentialsEndpoint+getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"), getenv, apiOpts), nil
	case getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI") != "":
		full := getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI")
		if err := checkContainerEndpoint(ctx, full); err != nil {
			return nil, fmt.Errorf("AWS_CONTAINER_CREDENTIALS_FULL_URI=%q: %w", full, err)
		}
		return containerCredentials(full, getenv, apiOpts), nil
	case disabled:
		return nil, errors.New("AWS credentials: none configured (AWS_ACCESS_KEY_ID, the container credentials " +
			"endpoint of an ECS task role) and the instance role is disabled (AWS_EC2_METADATA_DISABLED)")
	default:
		return aws.NewCredentialsCache(ec2rolecreds.New()), nil
	}
}

// containerCredentials fetches credentials from a container credentials
// endpoint, with its authorization token when one is configured (a token
// file is read at each fetch: it is rotated). The fetches go through
// apiOpts, as with the SDK's loader (counted, and faults injected in tests).
func containerCredentials(endpoint string, getenv func(string) string, apiOpts []func(*middleware.Stack) error) aws.CredentialsProvider {
	token, tokenFile := getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN"), getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
	p := endpointcreds.New(endpoint, func(o *endpointcreds.Options) {
		o.APIOptions = apiOpts
		o.AuthorizationToken = token
		if tokenFile != "" {
			o.AuthorizationTokenProvider = endpointcreds.TokenProviderFunc(func() (string, error) {
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return "", fmt.Errorf("read the container authorization token: %w", err)
				}
				return strings.TrimSpace(string(b)), nil
			})
		}
	})
	return aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = 5 * time.Minute })
}

// checkContainerEndpoint allows https to any host, and plain http only to
// hosts that resolve to loopback or the ECS and EKS credential addresses,
// as the SDK does: the request carries the authorization token.
func checkContainerEndpoint(ctx context.Context, endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	host := u.Hostname()
	switch {
	case host == "":
		return errors.New("no host")
	case u.Scheme == "https":
		return nil
	case u.Scheme != "http":
		return fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	addrs := []string{host}
	if net.ParseIP(host) == nil {
		if addrs, err = net.DefaultResolver.LookupHost(ctx, host); err != nil {
			return fmt.Errorf("resolve %s: %w", host, err)
		}
	}
	for _, a := range addrs {
		if !containerHostAllowed(net.ParseIP(a)) {
			return fmt.Errorf("host %s: plain http only to loopback or the ECS and EKS credential endpoints", host)
		}
	}
	return nil
}

func containerHostAllowed(ip net.IP) bool {
	if ip == nil {
		return false
	}
	if ip.IsLoopback() {
		return true
	}
	for _, h := range containerHosts {
		if ip.Equal(h) {
			return true
		}
	}
	return false
}
