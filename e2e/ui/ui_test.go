// Package ui tests the control plane's web UI in a real browser: headless
// Chromium (Debian's chromium package), driven through the Chrome DevTools
// Protocol by chromedp, against a real `butter dev` running examples/iot
// (its own process: control plane, embedded Kafka broker, pool with Node
// and Python workers, gateway). docs/ui.md says what it covers.
//
// Screenshots of each step are saved in $BUTTER_ARTIFACTS/<test> when
// that is set, else in a new directory under the system's temporary
// directory that is kept; the test logs where.
package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/butterfn/butter/api"
	"github.com/butterfn/butter/broker"
	"github.com/butterfn/butter/e2e/e2etest"
	"github.com/butterfn/butter/internal/testlog"
	"github.com/butterfn/butter/internal/testport"
	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestMain(m *testing.M) { e2etest.Main(m) }

// chromium finds the browser: $BUTTER_CHROMIUM, or Debian's chromium on
// the PATH. Without one the test is skipped, except in CI (CI=true), where
// make test-deps installs it: there a missing browser is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("BUTTER_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium on the PATH (nor $BUTTER_CHROMIUM), and CI=true: make test-deps installs Debian's chromium; the web UI test cannot be skipped in CI")
	}
	t.Skip("no chromium on the PATH (nor $BUTTER_CHROMIUM): apt-get install -y chromium, or make test-deps; skipped outside CI (CI=true makes it a failure)")
	return ""
}

// artifacts is the directory the screenshots go to, kept after the test.
func artifacts(t *testing.T) string {
	t.Helper()
	var dir string
	var err error
	if base := os.Getenv("BUTTER_ARTIFACTS"); base != "" {
		dir = filepath.Join(base, t.Name())
		err = os.MkdirAll(dir, 0o755)
	} else {
		dir, err = os.MkdirTemp("", "butter-ui-artifacts-")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// devProc is a running butter dev.
type devProc struct {
	out    *testlog.Buffer
	token  string // the management token it wrote
	broker string // the embedded broker's address it printed
}

func startDev(t *testing.T, dir, gateway, server string) *devProc {
	t.Helper()
	cmd := exec.Command(e2etest.Bin(), "dev", "-listen", gateway, "-server-addr", server, dir)
	d := &devProc{out: &testlog.Buffer{}}
	cmd.Stdout, cmd.Stderr = d.out, d.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("butter dev output (tail):\n%s", e2etest.Tail(d.out.String(), 8000))
		}
	})
	e2etest.WaitFor(t, 3*time.Minute, "butter dev's ready line", func() bool {
		select {
		case err := <-done:
			t.Fatalf("butter dev exited before it was ready: %v\n%s", err, d.out.String())
		default:
		}
		return strings.Contains(d.out.String(), "butter dev ready")
	})
	m := regexp.MustCompile(`broker: (\S+)`).FindStringSubmatch(d.out.String())
	if m == nil {
		t.Fatalf("butter dev printed no broker address:\n%s", d.out.String())
	}
	d.broker = m[1]
	tok, err := os.ReadFile(filepath.Join(dir, ".butter", "dev", "management-token"))
	if err != nil {
		t.Fatal(err)
	}
	d.token = strings.TrimSpace(string(tok))
	return d
}

// served counts butter dev's lines saying a revision serves.
func (d *devProc) served() int { return strings.Count(d.out.String(), " serving (deployed in ") }

// waitServed waits until butter dev says a revision serves after the
// count was n.
func (d *devProc) waitServed(t *testing.T, n int) {
	t.Helper()
	e2etest.WaitFor(t, 2*time.Minute, "butter dev serving a new revision", func() bool { return d.served() > n })
}

// browser is a headless Chromium tab, with a way to take screenshots.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string
	n   int
}

func newBrowser(t *testing.T, exe, dir string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1500, 1000), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser, on a context without a deadline.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	b := &browser{t: t, ctx: ctx, dir: dir}
	t.Cleanup(func() {
		if t.Failed() {
			b.shot("failure")
		}
	})
	return b
}

// do runs steps within d, failing the test (with a screenshot) when they
// fail.
func (b *browser) do(what string, d time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// wait polls the JavaScript condition cond until it is true, for at most
// d.
func (b *browser) wait(what, cond string, d time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, d+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(200*time.Millisecond))); err != nil {
		b.t.Fatalf("%s: not within %s: %v", what, d, err)
	}
}

// eval evaluates a JavaScript expression.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// shot saves a full-page screenshot, numbered in order.
func (b *browser) shot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.n++
	p := filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.n, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
}

// writeFile writes then renames, as editors do, so that butter dev's
// watcher never sees half a file.
func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// reading posts one reading to examples/iot's ingest route and answers
// the body.
func reading(t *testing.T, gateway, device string, temp float64) string {
	t.Helper()
	body := fmt.Sprintf(`{"device": %q, "temperature": %v}`, device, temp)
	req, _ := http.NewRequest(http.MethodPost, "http://"+gateway+"/devices/"+device+"/readings", strings.NewReader(body))
	req.Header.Set("X-API-Key", "dev-key")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("POST a reading: %s %s", resp.Status, b)
	}
	return string(b)
}

// js quotes s as a JavaScript string.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestWebUIOnIoT drives the web UI in headless Chromium against butter
// dev running examples/iot: a login with the management token butter dev
// wrote; the project's functions as blocks with the streams between them
// and non-zero rates after readings are posted; a second revision (an
// edit of ingest and of the spec) whose spec diff the revisions page
// shows, and its live log lines; a rollback from the UI, after which butter
// dev serves the first revision again; a dead letter (an event failing
// the readings stream's schema, written to the stream as a producer
// would) with its error, replayed from the UI back to its stream, where
// detect fails it again; a read-only token's replay refused with the API's
// 403 shown; and a traced call's spans from the route to detect.
func TestWebUIOnIoT(t *testing.T) {
	exe := chromium(t)
	shots := artifacts(t)
	dir := filepath.Join(t.TempDir(), "iot")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(e2etest.Root(), "examples", "iot"))); err != nil {
		t.Fatal(err)
	}
	gateway, server := testport.Addr(t), testport.Addr(t)
	d := startDev(t, dir, gateway, server)
	mgmt, err := api.NewClient(&api.Config{Address: "http://" + server, Token: d.token})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A token that may only read iot, for the 403.
	if _, err := mgmt.ACL().PolicyApply(ctx, "iot-read", "reads iot", `project "iot" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	reader, err := mgmt.ACL().TokenCreate(ctx, &api.ACLTokenCreateRequest{Name: "iot reader", Policies: []string{"iot-read"}})
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := mgmt.Projects().Status(ctx, "iot", nil)
	if err != nil {
		t.Fatal(err)
	}
	first := st.Active.ID

	b := newBrowser(t, exe, shots)
	ui := "http://" + server + "/ui/"

	// Log in.
	b.do("open the UI", time.Minute, chromedp.Navigate(ui), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.shot("login")
	b.do("log in", time.Minute, chromedp.SendKeys(chromedp.CSS("#token"), d.token), chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS(`#projects a[data-project="iot"]`)))
	if who := eval[string](b, `document.querySelector('#who').textContent`); !strings.Contains(who, "management") {
		t.Errorf("the header says %q; want the management token named", who)
	}
	b.shot("projects")

	// Traffic, then the blocks with non-zero rates.
	for i := range 12 {
		reading(t, gateway, fmt.Sprintf("dev-%d", i%3), float64(20+(i%2)*10))
	}
	b.do("open iot", time.Minute, chromedp.Click(chromedp.CSS(`#projects a[data-project="iot"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.fn-block[data-function="ingest"]`)))
	rate := func(fn string) string {
		return fmt.Sprintf(`parseFloat((document.querySelector('.fn-block[data-function=%s] [data-stat=rate]') || {}).textContent) > 0`, js(fn))
	}
	b.wait("ingest's and detect's rates above zero", rate("ingest")+" && "+rate("detect"), time.Minute)
	for _, s := range []string{"readings", "alerts", "reports"} {
		if !eval[bool](b, fmt.Sprintf(`!!document.querySelector('.stream-node[data-stream=%s]')`, js(s))) {
			t.Errorf("the block view has no stream node %s", s)
		}
	}
	if n := eval[int](b, `document.querySelectorAll('#graph svg.edges path').length`); n < 4 {
		t.Errorf("%d edges drawn; want ingest → readings → detect → alerts and nightly → reports", n)
	}
	b.wait("p50 and p99 of ingest", `/\d/.test(document.querySelector('.fn-block[data-function=ingest] [data-stat=p99]').textContent)`, 30*time.Second)
	b.shot("functions")

	// A second revision: ingest logs each reading and says which revision
	// answered; the spec gives it a shorter timeout.
	spec := filepath.Join(dir, "iot.fn.hcl")
	specText, _ := os.ReadFile(spec)
	if !strings.Contains(string(specText), `timeout      = "5s"`) {
		t.Fatal(`examples/iot's ingest has no timeout      = "5s" to edit`)
	}
	index := filepath.Join(dir, "functions", "ingest", "index.js")
	src, _ := os.ReadFile(index)
	edited := strings.Replace(string(src), "  return { accepted: true,", "  console.log(`reading from ${reading.device}: ${reading.temperature}`);\n  return { revision: 2, accepted: true,", 1)
	if edited == string(src) {
		t.Fatal("examples/iot's ingest changed: the test's edit no longer applies")
	}
	// Calls wait for butter dev to say a revision serves: a call that
	// reaches a new pool before its Kafka client is connected fails its
	// emit (a known race of butter dev's switch, not of the UI).
	served := d.served()
	writeFile(t, index, edited)
	writeFile(t, spec, strings.Replace(string(specText), `timeout      = "5s"`, `timeout      = "4s"`, 1))
	d.waitServed(t, served)
	if answer := reading(t, gateway, "probe", 21); !strings.Contains(answer, `"revision":2`) {
		t.Fatalf("the second revision answers %s", answer)
	}

	// Its live log lines.
	b.do("open the logs", time.Minute, chromedp.Navigate(ui+"#/p/iot/logs?function=ingest"), chromedp.WaitVisible(chromedp.CSS("#log-lines")))
	b.wait("the log stream live", `document.querySelector('#log-state').textContent === 'live'`, 30*time.Second)
	for i := range 3 {
		reading(t, gateway, "logdev", float64(30+i))
	}
	b.wait("ingest's log lines", `[...document.querySelectorAll('#log-lines .log-line')].filter(l => l.textContent.includes('reading from logdev')).length >= 3`, 30*time.Second)
	if !eval[bool](b, `[...document.querySelectorAll('#log-lines .log-line')].some(l => l.dataset.function === 'ingest' && /invocation=/.test(l.textContent))`) {
		t.Error("ingest's log lines carry no invocation")
	}
	b.shot("logs")

	// The revisions, the diff of the spec, and a rollback.
	b.do("open the revisions", time.Minute, chromedp.Navigate(ui+"#/p/iot/revisions"), chromedp.WaitVisible(chromedp.CSS("#revisions")))
	b.wait("two revisions, the second active", fmt.Sprintf(`document.querySelectorAll('#revisions tr[data-revision]').length >= 2 && document.querySelector('#revisions tr.active').dataset.revision !== %s`, js(first)), 30*time.Second)
	b.wait("the spec's diff", `[...document.querySelectorAll('#diff .diff.changed .l.add')].some(l => l.textContent.includes('timeout      = "4s"')) && [...document.querySelectorAll('#diff .diff.changed .l.del')].some(l => l.textContent.includes('timeout      = "5s"'))`, 30*time.Second)
	b.shot("revisions-diff")
	served = d.served()
	b.do("roll back", time.Minute, chromedp.Click(chromedp.CSS("#rollback")), chromedp.Click(chromedp.CSS("#rollback")))
	b.wait("the rollback done", `document.querySelector('#rollback-result') && document.querySelector('#rollback-result').textContent.includes('Rolled back')`, 30*time.Second)
	b.wait("the first revision active", fmt.Sprintf(`!!document.querySelector('#revisions tr.active') && document.querySelector('#revisions tr.active').dataset.revision === %s`, js(first)), 30*time.Second)
	d.waitServed(t, served)
	if !strings.Contains(d.out.String(), "==> revision "+first+" was made active (rolled back from ") {
		t.Errorf("butter dev did not say it serves the rolled-back revision %s", first)
	}
	if answer := reading(t, gateway, "probe", 21); strings.Contains(answer, `"revision"`) {
		t.Fatalf("after the rollback, ingest answers %s: the second revision's", answer)
	}
	b.shot("rolled-back")

	// A dead letter: an event that fails the readings stream's schema.
	kcl, err := kgo.NewClient(kgo.SeedBrokers(d.broker))
	if err != nil {
		t.Fatal(err)
	}
	defer kcl.Close()
	if err := kcl.ProduceSync(ctx, &kgo.Record{Topic: "iot.readings", Key: []byte("bad"), Value: []byte(`{"device": "bad", "temperature": "hot"}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	b.do("open detect's dead letters", time.Minute, chromedp.Navigate(ui+"#/p/iot/deadletters/detect"), chromedp.WaitVisible(chromedp.CSS("#deadletters")))
	b.wait("the dead letter with its error", `[...document.querySelectorAll('.dl-row')].some(r => r.querySelector('.error-type').textContent === 'PreconditionFailed' && r.textContent.includes('"hot"'))`, time.Minute)
	if msg := eval[string](b, `document.querySelector('.dl-row .error-message').textContent`); !strings.Contains(msg, "temperature") {
		t.Errorf("the dead letter's message %q does not name the field", msg)
	}
	b.shot("deadletters")
	b.do("replay it", time.Minute, chromedp.Click(chromedp.CSS(".dl-row button.replay")))
	b.wait("the replay's answer", `[...document.querySelectorAll('.dl-row .replayed')].some(e => /replayed to iot\.readings\/\d+\/\d+/.test(e.textContent))`, 30*time.Second)
	where := eval[string](b, `[...document.querySelectorAll('.dl-row .replayed')].find(e => e.textContent).textContent`)
	// detect reads the replayed event and fails it again: a new dead
	// letter that says it is a replay of the first.
	b.wait("the replayed event dead-lettered again", `[...document.querySelectorAll('.dl-row')].some(r => r.textContent.includes('a replay of iot.failed-readings/'))`, time.Minute)
	b.shot("replayed")
	t.Logf("dead letter %s", where)
	var topic string
	var part int32
	var off int64
	if _, err := fmt.Sscanf(strings.ReplaceAll(strings.TrimPrefix(where, "replayed to "), "/", " "), "%s %d %d", &topic, &part, &off); err != nil || topic != "iot.readings" {
		t.Fatalf("replay answer %q: %v", where, err)
	}
	rec := readRecord(t, d.broker, topic, part, off)
	if string(rec.Value) != `{"device": "bad", "temperature": "hot"}` || string(rec.Key) != "bad" || !strings.HasPrefix(broker.Header(rec, broker.HeaderReplayedFrom), "iot.failed-readings/") || broker.Header(rec, broker.HeaderErrorType) != "" {
		t.Errorf("the replayed record at %s: key %s value %s headers %v", where, rec.Key, rec.Value, rec.Headers)
	}

	// A token that may only read: the replay is refused, and the UI says
	// why.
	b.do("log out", time.Minute, chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.do("log in as the reader", time.Minute, chromedp.SendKeys(chromedp.CSS("#token"), reader.SecretID), chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS(`#projects a[data-project="iot"]`)))
	b.do("open detect's dead letters as the reader", time.Minute, chromedp.Navigate(ui+"#/p/iot/deadletters/detect"), chromedp.WaitVisible(chromedp.CSS(".dl-row button.replay")))
	b.do("replay as the reader", time.Minute, chromedp.Click(chromedp.CSS(".dl-row button.replay")))
	b.wait("the 403 shown", `!document.querySelector('#error').hidden && document.querySelector('#error').dataset.status === '403'`, 30*time.Second)
	if msg := eval[string](b, `document.querySelector('#error').textContent`); !strings.Contains(msg, "403 Forbidden") || !strings.Contains(msg, "permission denied") || !strings.Contains(msg, `"deploy"`) || !strings.Contains(msg, "iot reader") {
		t.Errorf("the refusal shown: %q; want the API's 403 naming the token and the deploy capability", msg)
	}
	b.shot("forbidden")

	// The traces of recent calls: a reading's, from the route to detect.
	b.do("open the traces", time.Minute, chromedp.Navigate(ui+"#/p/iot/traces"), chromedp.WaitVisible(chromedp.CSS("#traces")))
	b.wait("a reading's trace listed", `[...document.querySelectorAll('.trace-row a')].some(a => a.textContent === 'POST /devices/{device}/readings')`, time.Minute)
	b.shot("traces")
	b.do("open a reading's trace", time.Minute, chromedp.Navigate(ui+"#/p/iot/traces/"+eval[string](b, `[...document.querySelectorAll('.trace-row')].find(r => r.querySelector('a').textContent === 'POST /devices/{device}/readings' && r.textContent.includes('detect')).dataset.trace`)),
		chromedp.WaitVisible(chromedp.CSS("#waterfall")))
	for _, span := range []string{"POST /devices/{device}/readings", "invoke ingest", "handler ingest", "send iot.readings", "process readings detect"} {
		if !eval[bool](b, fmt.Sprintf(`!!document.querySelector('#waterfall .span-row[data-span=%s]')`, js(span))) {
			t.Errorf("the trace has no span %q", span)
		}
	}
	b.shot("trace")
}

// readRecord reads the record at topic/partition/offset.
func readRecord(t *testing.T, addr, topic string, p int32, o int64) *kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(o)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		var got *kgo.Record
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("no record at %s/%d/%d within 30s", topic, p, o)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if got == nil && r.Offset == o {
				got = r
			}
		})
		if got != nil {
			return got
		}
	}
}
