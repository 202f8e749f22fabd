package proc

import (
	"context"
	"strings"
	"testing"
)

// TestStderrTail: a command that prints a lot on stderr gives an error with
// the end of it, where the reason usually is.
func TestStderrTail(t *testing.T) {
	script := `i=0; while [ $i -lt 2000 ]; do echo "noise $i" >&2; i=$((i+1)); done; echo "FATAL: the real reason" >&2; exit 1`
	err := Run(context.Background(), []string{"sh", "-c", script}, 0, nil, nil, nil)
	if err == nil {
		t.Fatal("a failing command gave no error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "exit status 1") || !strings.HasSuffix(msg, "FATAL: the real reason") || !strings.Contains(msg, "…") {
		t.Fatalf("error does not end with the stderr's tail: %.200q…", msg)
	}
	if len(msg) > stderrTail+200 {
		t.Fatalf("error is %d bytes long, want about %d at most", len(msg), stderrTail)
	}
}

func TestEnvAndStdio(t *testing.T) {
	var out strings.Builder
	err := Run(context.Background(), []string{"sh", "-c", `printf '%s:' "$GREETING"; cat`}, 0, []string{"GREETING=hello"}, strings.NewReader("stdin"), &out)
	if err != nil || out.String() != "hello:stdin" {
		t.Fatalf("Run: %q, %v; want hello:stdin", out.String(), err)
	}
}
