// Package proc runs an operator's command (a hook, a dump or load command)
// without a shell, with a timeout that kills the command and everything it
// started, and an error that says what went wrong and what it printed on
// stderr.
package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// stderrTail is how much of the end of a command's stderr an error carries.
const stderrTail = 4 << 10

// waitDelay is how long Run waits for a killed command's output pipes to
// close (a grandchild may hold them) before giving up on them.
const waitDelay = 2 * time.Second

// Run runs argv[0] with arguments argv[1:] (no shell), with env added to
// this process's environment, stdin and stdout connected (nil means
// /dev/null). It kills the command's whole process group when ctx ends or
// after timeout (none when zero). The error is the exit status, "timed out
// after 30s" or the context's error, followed by the tail of stderr.
func Run(ctx context.Context, argv []string, timeout time.Duration, env []string, stdin io.Reader, stdout io.Writer) error {
	if len(argv) == 0 || argv[0] == "" {
		return errors.New("no command given")
	}
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	cmd := exec.CommandContext(runCtx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin, cmd.Stdout = stdin, stdout
	stderr := &tail{max: stderrTail}
	cmd.Stderr = stderr
	cmd.WaitDelay = waitDelay
	killGroup(cmd)
	err := cmd.Run()
	if err == nil {
		return nil
	}
	switch {
	case ctx.Err() != nil:
		err = ctx.Err()
	case runCtx.Err() != nil:
		err = fmt.Errorf("timed out after %s", timeout)
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		return fmt.Errorf("%w; stderr: %s", err, s)
	}
	if cmd.Process == nil {
		return err // it never started: stderr says nothing
	}
	return fmt.Errorf("%w (nothing on stderr)", err)
}

// tail keeps the last max bytes written to it.
type tail struct {
	max int
	b   []byte
	cut bool
}

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tail) String() string {
	if t.cut {
		return "…" + string(t.b)
	}
	return string(t.b)
}
