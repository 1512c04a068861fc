package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/internal/chromiumtest"
	"github.com/maskpredictor/maskpredictor/labels"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// browser is a headless Chromium driven over the DevTools protocol on a
// pipe (--remote-debugging-pipe: NUL-terminated JSON on fds 3 and 4), so
// the test can click and type without a driver library or a port.
type browser struct {
	t       *testing.T
	cmd     *exec.Cmd
	in      io.WriteCloser
	session string

	mu      sync.Mutex
	id      int
	pending map[int]chan cdpReply
	done    chan struct{}
	stderr  bytes.Buffer
}

type cdpReply struct {
	ID     int             `json:"id"`
	Method string          `json:"method"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func startBrowser(t *testing.T, bin string) *browser {
	t.Helper()
	profile := t.TempDir()
	toChrome, ourOut, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ourIn, fromChrome, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, in: ourOut, pending: map[int]chan cdpReply{}, done: make(chan struct{})}
	b.cmd = exec.Command(bin, append(chromiumtest.Flags(profile), "--remote-debugging-pipe", "about:blank")...)
	b.cmd.ExtraFiles = []*os.File{toChrome, fromChrome} // fds 3 and 4
	b.cmd.Stderr = &b.stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	toChrome.Close()
	fromChrome.Close()
	go b.read(ourIn)
	t.Cleanup(b.close)

	var targets struct {
		TargetInfos []struct {
			TargetID string `json:"targetId"`
			Type     string `json:"type"`
		} `json:"targetInfos"`
	}
	b.call("", "Target.getTargets", nil, &targets)
	target := ""
	for _, ti := range targets.TargetInfos {
		if ti.Type == "page" {
			target = ti.TargetID
		}
	}
	if target == "" {
		var created struct {
			TargetID string `json:"targetId"`
		}
		b.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &created)
		target = created.TargetID
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	b.call("", "Target.attachToTarget", map[string]any{"targetId": target, "flatten": true}, &att)
	b.session = att.SessionID
	b.call(b.session, "Page.enable", nil, nil)
	b.call(b.session, "Runtime.enable", nil, nil)
	return b
}

// read dispatches replies until Chromium closes its end.
func (b *browser) read(r io.ReadCloser) {
	defer close(b.done)
	defer r.Close()
	br := bufio.NewReader(r)
	for {
		msg, err := br.ReadBytes(0)
		if err != nil {
			return
		}
		var rep cdpReply
		if json.Unmarshal(msg[:len(msg)-1], &rep) != nil || rep.ID == 0 {
			continue // an event
		}
		b.mu.Lock()
		ch := b.pending[rep.ID]
		delete(b.pending, rep.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- rep
		}
	}
}

// call sends one command and decodes its result into out (if not nil).
func (b *browser) call(session, method string, params any, out any) {
	b.t.Helper()
	if err := b.try(session, method, params, out); err != nil {
		b.t.Fatalf("%s: %v\n%s", method, err, b.stderr.String())
	}
}

func (b *browser) try(session, method string, params any, out any) error {
	b.mu.Lock()
	b.id++
	id := b.id
	ch := make(chan cdpReply, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := b.in.Write(append(data, 0)); err != nil {
		return fmt.Errorf("writing to chromium: %w", err)
	}
	select {
	case rep := <-ch:
		if rep.Error != nil {
			return fmt.Errorf("chromium: %d %s", rep.Error.Code, rep.Error.Message)
		}
		if out != nil {
			return json.Unmarshal(rep.Result, out)
		}
		return nil
	case <-b.done:
		return errors.New("chromium exited")
	case <-time.After(30 * time.Second):
		return errors.New("no reply within 30 s")
	}
}

// eval runs a JavaScript expression in the page (promises awaited) and
// decodes its value into out.
func (b *browser) eval(expr string, out any) {
	b.t.Helper()
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	b.call(b.session, "Runtime.evaluate", map[string]any{"expression": expr, "awaitPromise": true, "returnByValue": true}, &res)
	if e := res.ExceptionDetails; e != nil {
		b.t.Fatalf("%s: %s %s", expr, e.Text, e.Exception.Description)
	}
	if out != nil {
		if err := json.Unmarshal(res.Result.Value, out); err != nil {
			b.t.Fatalf("%s = %s: %v", expr, res.Result.Value, err)
		}
	}
}

// waitFor polls a boolean expression until it holds.
func (b *browser) waitFor(what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ok bool
		b.eval("!!("+expr+")", &ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var html string
			b.eval("document.body ? document.body.innerText : ''", &html)
			b.t.Fatalf("timed out waiting for %s (%s); page text:\n%.2000s", what, expr, html)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// key types one key into the focused element, as a person would.
func (b *browser) key(key, code string, vk int, text string) {
	b.t.Helper()
	down := map[string]any{"type": "keyDown", "key": key, "code": code, "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk}
	if text != "" {
		down["text"] = text
	}
	b.call(b.session, "Input.dispatchKeyEvent", down, nil)
	b.call(b.session, "Input.dispatchKeyEvent", map[string]any{"type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk}, nil)
}

func (b *browser) navigate(u string) {
	b.t.Helper()
	b.call(b.session, "Page.navigate", map[string]any{"url": u}, nil)
	b.waitFor("the page to load", `document.readyState === "complete" && location.href !== "about:blank"`)
}

func (b *browser) screenshot(path string) {
	b.t.Helper()
	var shot struct {
		Data string `json:"data"`
	}
	b.call(b.session, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) close() {
	_ = b.try("", "Browser.close", nil, nil)
	b.in.Close()
	exited := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-exited
	}
	<-b.done
}

// TestChromiumReview labels a name on /admin/review in headless Chromium,
// by keyboard: logged in with Basic credentials in the URL, it types "m" on
// the first token's select of "Zzyzx Qwerty 99" (brand brand model under the
// default model), which re-decodes the second token to model, then presses
// Enter to save; the label is then in the store and in the cache entry
// Rails reads.
func TestChromiumReview(t *testing.T) {
	bin := chromiumtest.Find(t)
	ctx := context.Background()
	f := newFixture(t, Config{User: "ops", Password: "s3cret-pw"})
	before, _ := f.crf.Predict("Zzyzx Qwerty 99")
	after, _ := f.crf.PredictFixed("Zzyzx Qwerty 99", map[int]string{0: "model"})
	if before.Labels[1] == after.Labels[1] {
		t.Fatalf("the default model no longer re-decodes token 1 when token 0 is fixed (%v → %v): pick another name", before.Labels, after.Labels)
	}
	u, err := url.Parse(f.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("ops", "s3cret-pw")
	b := startBrowser(t, bin)
	b.navigate(u.String() + "/admin/review")

	var title string
	b.eval("document.title", &title)
	if !strings.Contains(title, "Review") {
		t.Fatalf("title %q", title)
	}
	item := `document.querySelector('.item[data-name="Zzyzx Qwerty 99"]')`
	b.waitFor("the name on the page", item)
	var labelsBefore []string
	b.eval(`Array.from(`+item+`.querySelectorAll("select")).map(s => s.value)`, &labelsBefore)
	if strings.Join(labelsBefore, " ") != strings.Join(before.Labels, " ") {
		t.Errorf("preselected %v, predicted %v", labelsBefore, before.Labels)
	}
	// The first item has focus on load; Tab order reaches the selects.
	var focused string
	b.eval(`document.activeElement.className`, &focused)
	if focused != "item" {
		t.Errorf("focus on load: %q", focused)
	}

	// Keyboard: focus token 0 of the name, type "m" (type-ahead: model).
	b.eval(item+`.querySelector('select[data-pos="0"]').focus()`, nil)
	b.key("m", "KeyM", 77, "m")
	b.waitFor("the re-decode", item+`.querySelector(".status").textContent.startsWith("re-decoded")`)
	var labelsAfter []string
	b.eval(`Array.from(`+item+`.querySelectorAll("select")).map(s => s.value)`, &labelsAfter)
	if strings.Join(labelsAfter, " ") != strings.Join(after.Labels, " ") {
		t.Errorf("after typing m on token 0: %v, want %v", labelsAfter, after.Labels)
	}
	var redecoded int
	b.eval(item+`.querySelectorAll("select.redecoded").length`, &redecoded)
	if redecoded == 0 {
		t.Error("no other select marked re-decoded")
	}
	var statusText string
	b.eval(item+`.querySelector(".status").textContent`, &statusText)
	t.Logf("status after the change: %q", statusText)

	// Enter saves the focused name.
	b.key("Enter", "Enter", 13, "\r")
	b.waitFor("the save", item+`.classList.contains("saved")`)
	b.eval(item+`.querySelector(".status").textContent`, &statusText)
	t.Logf("status after save: %q", statusText)

	// Skip the next name with k on it (focus moved there after the save).
	var next string
	b.eval(`document.activeElement.dataset.name || ""`, &next)
	if next == "" || next == "Zzyzx Qwerty 99" {
		t.Errorf("focus after save: %q", next)
	} else {
		b.key("k", "KeyK", 75, "k")
		b.waitFor("the skip", `document.querySelector('.item[data-name="`+next+`"]').hidden`)
	}
	b.screenshot(filepath.Join(chromiumtest.ArtifactsDir(t), "review.png"))
	checkScreenshot(t, filepath.Join(chromiumtest.ArtifactsDir(t), "review.png"))

	// The label is stored, by ops, from the dashboard, and Rails' cache
	// entry is the label.
	all, bad, err := f.store.All(ctx)
	if err != nil || bad != 0 || len(all) != 1 {
		t.Fatalf("store: %v %d %v", all, bad, err)
	}
	l := all[0]
	var got []string
	for _, e := range l.Breakdown {
		got = append(got, e.Label)
	}
	if l.MaskName != "Zzyzx Qwerty 99" || strings.Join(got, " ") != strings.Join(after.Labels, " ") || l.Source != labels.SourceDashboard || l.LabelledBy != "ops" {
		t.Errorf("stored %+v", l)
	}
	entry, err := f.rdb.Get(ctx, "maskpredictor:prediction:zzyzx qwerty 99").Result()
	if err != nil {
		t.Fatal(err)
	}
	var p predictor.Prediction
	if err := p.UnmarshalJSON([]byte(entry)); err != nil || p.Source != "label" || strings.Join(p.Labels, " ") != strings.Join(after.Labels, " ") {
		t.Errorf("cache entry %s (%v)", entry, err)
	}
	// The skipped name was not stored.
	if next != "" {
		if _, ok, _ := f.store.Get(ctx, next); ok {
			t.Errorf("skipped %q was stored", next)
		}
	}
}
