package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/nats-io/nkeys"

	"lifeboat.dev/pkg/auth"
)

type signerKey struct{}

// WithSigner makes every command, event and request sent with the
// returned context carry kp's signature (package auth): a cluster started
// with --auth acts only on operator commands signed by a key its
// cluster.json lists, and records who signed each one (CommandAudited).
func WithSigner(ctx context.Context, kp nkeys.KeyPair) context.Context {
	return context.WithValue(ctx, signerKey{}, kp)
}

// sign adds ctx's signer's signature of (subject, id, body) to h, if ctx
// has a signer.
func sign(ctx context.Context, subject, id string, h map[string][]string, body []byte) error {
	kp, ok := ctx.Value(signerKey{}).(nkeys.KeyPair)
	if !ok {
		return nil
	}
	return auth.Sign(kp, subject, id, h, body, time.Now())
}

// requestID names one signed request.
func requestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
