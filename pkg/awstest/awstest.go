// Package awstest gives tests an AWS endpoint: the one AWS_ENDPOINT_URL
// names when it is set (LocalStack, say; set but empty means AWS itself,
// with the SDK's default credentials and region), else a moto server
// (moto_server) started on a free loopback port for the test binary.
//
//	func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		cfg := awstest.Config(t) // aws.Config for the endpoint
//		name := awstest.Name(t)  // a resource name unique to this test
//		...
//	}
//
// Main starts the server once for the package, runs the tests and stops it,
// so every test stops what it starts. Tests isolate themselves by naming
// their resources from t.Name(). Without moto_server on PATH the tests fail
// with a message saying how to get it (make test installs it).
package awstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"go.uber.org/goleak"
)

// Region is the region tests use.
const Region = "us-east-1"

// EndpointEnv names the variable that points tests at an existing endpoint
// instead of starting moto: the SDK's own setting.
const EndpointEnv = "AWS_ENDPOINT_URL"

var (
	mu       sync.Mutex
	endpoint string
	isMoto   bool
	startErr error
	proc     *exec.Cmd
	waited   chan struct{} // closed when proc has exited
	started  bool
)

// Main runs m (a *testing.M, or anything that runs tests) with an AWS
// endpoint available, stops the moto server it started, and returns the
// exit code.
func Main(m interface{ Run() int }) int {
	defer stop()
	return m.Run()
}

// MainLeakChecked is Main, then a goleak check that no test left a
// goroutine behind. The SDK's pooled HTTP connections keep their read and
// write loops until they idle out; those are not leaks and are ignored.
func MainLeakChecked(m interface{ Run() int }) int {
	code := Main(m)
	if code != 0 {
		return code
	}
	if err := goleak.Find(
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	); err != nil {
		fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
		return 1
	}
	return 0
}

// Endpoint returns the endpoint URL, starting moto on first use; "" means
// AWS itself (AWS_ENDPOINT_URL set but empty). The test fails if no
// endpoint can be had.
func Endpoint(t testing.TB) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if !started {
		started = true
		endpoint, startErr = start()
	}
	if startErr != nil {
		t.Fatalf("AWS endpoint: %v", startErr)
	}
	return endpoint
}

// IsMoto reports whether the endpoint is a moto server this package started
// (so moto's known gaps apply).
func IsMoto(t testing.TB) bool {
	Endpoint(t)
	return isMoto
}

func start() (string, error) {
	if ep, ok := os.LookupEnv(EndpointEnv); ok {
		return ep, nil
	}
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		return "", fmt.Errorf("moto_server is not on PATH (install it with `pip install 'moto[server]>=5.1.21'`, or run `make test`, which does): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start moto_server: %w", err)
	}
	proc = cmd
	ep := fmt.Sprintf("http://127.0.0.1:%d", port)
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	waited = exited
	deadline := time.Now().Add(60 * time.Second)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-exited:
			proc = nil
			return "", fmt.Errorf("moto_server exited before it came up: %s", out.String())
		default:
		}
		resp, err := hc.Get(ep + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			stopLocked()
			return "", fmt.Errorf("moto_server did not come up on %s within 60s: %s", ep, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	isMoto = true
	// moto moves an ECS task one step toward STOPPED on every DescribeTasks
	// call; pin tasks where RunTask leaves them (AWS_NOTES §3.3).
	body := strings.NewReader(`{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000}}`)
	if resp, err := hc.Post(ep+"/moto-api/state-manager/set-transition", "application/json", body); err == nil {
		resp.Body.Close()
	}
	return ep, nil
}

func stop() {
	mu.Lock()
	defer mu.Unlock()
	stopLocked()
}

// stopLocked stops the moto server this package started; mu is held.
func stopLocked() {
	if proc == nil || proc.Process == nil {
		return
	}
	_ = syscall.Kill(-proc.Process.Pid, syscall.SIGTERM)
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-proc.Process.Pid, syscall.SIGKILL)
		<-waited
	}
	proc = nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Config returns an aws.Config for the endpoint. On the moto server this
// package started: region us-east-1, static test credentials. On an
// endpoint named by AWS_ENDPOINT_URL: the SDK's default credential chain
// and region (us-east-1 when none is configured). opts add to it.
func Config(t testing.TB, opts ...func(*config.LoadOptions) error) aws.Config {
	t.Helper()
	ep := Endpoint(t)
	var base []func(*config.LoadOptions) error
	if ep != "" {
		base = append(base, config.WithBaseEndpoint(ep))
	}
	if IsMoto(t) {
		base = append(base, config.WithRegion(Region),
			config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("test", "test", "")))
	}
	cfg, err := config.LoadDefaultConfig(context.Background(), append(base, opts...)...)
	if err != nil {
		t.Fatalf("aws config: %v", err)
	}
	if cfg.Region == "" {
		cfg.Region = Region
	}
	return cfg
}

var unsafe = regexp.MustCompile(`[^a-zA-Z0-9-]+`)

// Name returns a resource name unique to this test and run: derived from
// t.Name(), lower case, at most 60 characters of [a-z0-9-], valid as a
// DynamoDB table, SQS queue or S3 bucket name.
func Name(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	n := strings.Trim(strings.ToLower(unsafe.ReplaceAllString(t.Name(), "-")), "-")
	if len(n) > 50 {
		n = n[len(n)-50:]
	}
	return strings.Trim("t-"+n, "-") + "-" + hex.EncodeToString(b[:])
}
