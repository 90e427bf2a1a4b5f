package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/fake"
)

// waitLog waits until the log contains want n times.
func waitLog(t *testing.T, log *fake.Buffer, want string, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Count(log.String(), want) >= n {
			return
		}
	}
	t.Fatalf("log never had %q %d times:\n%s", want, n, log.String())
}

// TestReload: a changed configuration or policy file is picked up without a restart, a
// bad one keeps the running configuration, and SIGHUP reloads too. Not parallel: it
// sends SIGHUP to the test process, which serve catches while it runs.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "tls_policy")
	if err := os.WriteFile(policyFile, []byte("example.test encrypt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cfgFile := filepath.Join(dir, "tlsgate.yaml")
	good := "milter:\n  listen: inet:" + addr + "\ndns:\n  resolver: 127.0.0.1:53\nprobe:\n  helo: probe.test\npolicy_files: [" + policyFile + "]\n"
	if err := os.WriteFile(cfgFile, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	log, stop := startServe(t, cfgFile)

	// A new policy line: reloaded, and the log counts two policies.
	if err := os.WriteFile(policyFile, []byte("example.test encrypt\nexample.net secure\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, "configuration reloaded", 1)
	if !strings.Contains(log.String(), `trigger="file changed" policies=2`) {
		t.Errorf("reload did not read the new policy file:\n%s", log.String())
	}

	// A bad configuration file: the running configuration stays, and says why.
	if err := os.WriteFile(cfgFile, []byte(good+"bogus_key: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, "configuration reload failed; the running configuration stays", 1)
	if !strings.Contains(log.String(), "bogus_key") {
		t.Errorf("the failure does not name the bad key:\n%s", log.String())
	}

	// Fixed, with a restart-only change, then SIGHUP.
	if err := os.WriteFile(cfgFile, []byte(strings.Replace(good, "probe.test", "other.test", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, "configuration reloaded", 2)
	if !strings.Contains(log.String(), "restart tlsgate") || !strings.Contains(log.String(), "key=probe") {
		t.Errorf("no warning that probe settings need a restart:\n%s", log.String())
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, `trigger=SIGHUP`, 1)

	stop()
}

// startServe runs `tlsgate serve --config cfgFile` in-process until it logs that it
// started. stop ends it as SIGTERM would and fails the test unless it exits 0 within
// 15 s; the test's cleanup ends it too.
func startServe(t *testing.T, cfgFile string) (log *fake.Buffer, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log = &fake.Buffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", cfgFile}, nil, &bytes.Buffer{}, log) }()
	waitLog(t, log, "tlsgate started", 1)
	return log, func() {
		t.Helper()
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exit %d\n%s", code, log.String())
			}
		case <-time.After(15 * time.Second):
			t.Fatal("serve did not stop")
		}
	}
}
