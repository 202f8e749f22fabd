package storekind

import (
	"context"
	"errors"
	"fmt"
	"time"

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/storekind/internal/proc"
)

// DefaultHookTimeout bounds a hook whose Timeout is zero.
const DefaultHookTimeout = 30 * time.Second

// Hook is a command run around a dump, such as freezing a file system or an
// application before it and thawing it after. It runs without a shell.
type Hook struct {
	// Name says which hook this is in errors ("pre", "post", "freeze").
	Name string
	// Command is the program and its arguments.
	Command []string
	// Timeout bounds the run; zero means DefaultHookTimeout. A hook still
	// running then is killed with everything it started.
	Timeout time.Duration
}

// Run runs the hook. The error names the hook and its command and says what
// happened: its exit status, "timed out after 30s", or the cancellation,
// followed by the end of its stderr.
func (h Hook) Run(ctx context.Context) error {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultHookTimeout
	}
	if err := proc.Run(ctx, h.Command, timeout, nil, nil, nil); err != nil {
		return fmt.Errorf("%s hook %q: %w", h.Name, h.Command, err)
	}
	return nil
}

// WithHooks returns k with pre run before each Dump and post after it (either
// may be nil). A failing pre hook stops the dump and post is not run; once
// pre has succeeded, post always runs, even when the dump fails or ctx is
// cancelled (it still has its own timeout), so a frozen store is always
// thawed. A failing post hook fails the backup: an operator must learn that
// the thaw did not happen. Load is k's own.
func WithHooks(k Kind, pre, post *Hook) Kind {
	if pre != nil && pre.Name == "" {
		p := *pre
		p.Name = "pre"
		pre = &p
	}
	if post != nil && post.Name == "" {
		p := *post
		p.Name = "post"
		post = &p
	}
	return hooked{Kind: k, pre: pre, post: post}
}

type hooked struct {
	Kind
	pre, post *Hook
}

func (h hooked) Dump(ctx context.Context, payloadDir string) (backup.Info, error) {
	if h.pre != nil {
		if err := h.pre.Run(ctx); err != nil {
			return backup.Info{}, fmt.Errorf("%w (the dump was not started)", err)
		}
	}
	info, err := h.Kind.Dump(ctx, payloadDir)
	if h.post != nil {
		if perr := h.post.Run(context.WithoutCancel(ctx)); perr != nil {
			err = errors.Join(err, fmt.Errorf("%w (the store may still be frozen)", perr))
		}
	}
	if err != nil {
		return backup.Info{}, err
	}
	return info, nil
}
