package proc

import (
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func sh(t *testing.T, script string) *Proc {
	t.Helper()
	p := New("sh", "/bin/sh", filepath.Join(t.TempDir(), "sh.log"), "-c", script)
	t.Cleanup(p.Kill)
	return p
}

func TestWaitLogValueReadsTextAndJSONLogs(t *testing.T) {
	p := sh(t, `echo 'msg=listening lease_address=127.0.0.1:7070 admin_address="[::1]:7071"'; echo '{"http_address":"127.0.0.1:8080"}'; exec sleep 30`)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"lease_address": "127.0.0.1:7070", "admin_address": "[::1]:7071", "http_address": "127.0.0.1:8080"} {
		if got, err := p.WaitLogValue(key, 5*time.Second); err != nil || got != want {
			t.Errorf("WaitLogValue(%s) = %q, %v; want %q", key, got, err, want)
		}
	}
	if err := p.Stop(5 * time.Second); err == nil || !strings.Contains(err.Error(), "killed by terminated") {
		t.Errorf("Stop of a process that dies of SIGTERM = %v", err)
	}
	if p.Running() {
		t.Error("still running after Stop")
	}
}

func TestExitStatusAndRestart(t *testing.T) {
	p := sh(t, `echo "run $$"; exit 3`)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	var exit *ExitError
	if err := p.Wait(5 * time.Second); !errors.As(err, &exit) || exit.Code != 3 {
		t.Fatalf("Wait = %v, want exit status 3", err)
	}
	first := p.Log()
	if err := p.Restart(time.Second); err != nil {
		t.Fatal(err)
	}
	_ = p.Wait(5 * time.Second)
	if p.Starts() != 2 {
		t.Errorf("Starts = %d, want 2", p.Starts())
	}
	if second := p.Log(); second == first || strings.Count(second, "run ") != 1 {
		t.Errorf("Log after a restart is not just the second run's: %q (first %q)", second, first)
	}
	if n := strings.Count(p.Tail(10), "=== "); n != 2 {
		t.Errorf("the log has %d start lines, want 2:\n%s", n, p.Tail(10))
	}
	if n := p.CountLog(regexp.MustCompile(`^run \d+$`)); n != 1 {
		t.Errorf("CountLog = %d, want 1", n)
	}
}

func TestWaitLogFailsEarlyWhenTheProcessExits(t *testing.T) {
	p := sh(t, `echo nothing to see; exit 0`)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := p.WaitLog(regexp.MustCompile(`never`), 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exited") || time.Since(start) > 10*time.Second {
		t.Errorf("WaitLog on an exited process = %v after %s", err, time.Since(start))
	}
}

func TestStopKillsAProcessThatIgnoresSIGTERM(t *testing.T) {
	p := sh(t, `trap '' TERM; echo up; exec sleep 30`)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitLog(regexp.MustCompile(`^up$`), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(300 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "did not exit") {
		t.Errorf("Stop = %v, want a kill after the timeout", err)
	}
	if p.Running() {
		t.Error("still running")
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("FTP_POOLER_CONFIG", "/elsewhere.yaml")
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("E2E_KEPT", "yes")
	for _, inherit := range []bool{false, true} {
		p := sh(t, `env; exec sleep 30`)
		p.Env, p.Inherit = []string{"ADDED=1"}, inherit
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := p.WaitLog(regexp.MustCompile(`^ADDED=1$`), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		log := p.Log()
		for _, kv := range []string{"FTP_POOLER_CONFIG=", "OTEL_TRACES_EXPORTER="} {
			if strings.Contains(log, "\n"+kv) != inherit {
				t.Errorf("inherit %v: %s passed on: %v", inherit, kv, !inherit)
			}
		}
		if !strings.Contains(log, "\nE2E_KEPT=yes") {
			t.Errorf("inherit %v: the rest of the environment did not pass", inherit)
		}
		m, err := p.ReadMemory()
		if err != nil || m.RSS <= 0 {
			t.Errorf("ReadMemory = %+v, %v", m, err)
		}
		if CPUSeconds(p.Pid()) < 0 || TreeCPU(p.Pid()) < 0 {
			t.Error("negative CPU time")
		}
		p.Kill()
	}
}

func TestSampleMemoryKeepsThePeak(t *testing.T) {
	p := sh(t, `exec sleep 30`)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	s := SampleMemory(10*time.Millisecond, p)
	time.Sleep(50 * time.Millisecond)
	peak := s.Stop()
	if m := peak[p.Name]; m.RSS <= 0 || m.HWM < m.RSS/2 {
		t.Errorf("peak %+v", m)
	}
}
