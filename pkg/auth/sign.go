package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nkeys"
)

// Within one NATS account the server does not stamp a message with who
// sent it, so an operator's command carries its own proof: the operator's
// NKey signs the subject, the message id, the time and the body's SHA-256,
// and every service checks the signature against cluster.json's operator
// keys before it acts.
const (
	// HeaderSigner is the signing operator's public NKey.
	HeaderSigner = "Lifeboat-Signer"
	// HeaderSignedAt is when the operator signed, RFC 3339, by its clock.
	HeaderSignedAt = "Lifeboat-Signed-At"
	// HeaderSignature is the signature, base64 (URL alphabet, unpadded).
	HeaderSignature = "Lifeboat-Signature"
	// HeaderRequestID names a signed request (an API call has no message
	// id of its own).
	HeaderRequestID = "Lifeboat-Request-Id"
)

// ErrUnsigned is a command or request that carries no signature.
var ErrUnsigned = errors.New("not signed")

// signedBytes is what a signature covers.
func signedBytes(subject, id, at string, body []byte) []byte {
	sum := sha256.Sum256(body)
	return []byte("lifeboat-signed-v1\n" + subject + "\n" + id + "\n" + at + "\n" + hex.EncodeToString(sum[:]))
}

// Sign adds kp's signature of the message (subject, id, body) to h.
func Sign(kp nkeys.KeyPair, subject, id string, h map[string][]string, body []byte, now time.Time) error {
	pub, err := kp.PublicKey()
	if err != nil {
		return err
	}
	at := now.UTC().Format(time.RFC3339Nano)
	sig, err := kp.Sign(signedBytes(subject, id, at, body))
	if err != nil {
		return fmt.Errorf("auth: sign: %w", err)
	}
	h[HeaderSigner] = []string{pub}
	h[HeaderSignedAt] = []string{at}
	h[HeaderSignature] = []string{base64.RawURLEncoding.EncodeToString(sig)}
	return nil
}

// Signature is a verified signature.
type Signature struct {
	// Key is the signer's public NKey.
	Key string
	// At is when it signed, by its clock.
	At time.Time
}

// Verify checks the signature that get (a header lookup) carries for the
// message (subject, id, body): ErrUnsigned when there is none, another
// error when it is malformed or does not match. Whether the key is
// trusted is the caller's question (Cluster.Operator).
func Verify(subject, id string, get func(string) string, body []byte) (Signature, error) {
	pub, at, sig := get(HeaderSigner), get(HeaderSignedAt), get(HeaderSignature)
	if pub == "" && sig == "" {
		return Signature{}, ErrUnsigned
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return Signature{}, fmt.Errorf("signer %q is not a user's public NKey", pub)
	}
	when, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return Signature{}, fmt.Errorf("signed-at %q: %w", at, err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return Signature{}, fmt.Errorf("signature is not base64: %w", err)
	}
	kp, err := nkeys.FromPublicKey(pub)
	if err != nil {
		return Signature{}, err
	}
	if err := kp.Verify(signedBytes(subject, id, at, body), raw); err != nil {
		return Signature{}, fmt.Errorf("signature of %s does not match the message (altered, or signed for another subject or id)", pub)
	}
	return Signature{Key: pub, At: when}, nil
}

// Verdict is what Judge decided about a command or an operator request.
type Verdict struct {
	// Key and SignedAt are the verified signer and its clock, if signed.
	Key      string
	SignedAt time.Time
	// Operator is the operator's name in cluster.json, if Key is one.
	Operator string
	// Accepted says it may be acted on; Reason says why not.
	Accepted bool
	Reason   string
}

// Judge decides whether a command or an operator request (subject, id,
// body, headers looked up by get) may be acted on: with keys (a cluster
// started with --auth), only when an operator key of cluster.json signed
// it; without (a cluster on loopback), always, the signature recorded
// when there is one.
func Judge(keys *Cluster, subject, id string, get func(string) string, body []byte) Verdict {
	v := Verdict{Accepted: true}
	sig, err := Verify(subject, id, get, body)
	if err == nil {
		v.Key, v.SignedAt = sig.Key, sig.At.UTC()
		if keys != nil {
			v.Operator, _ = keys.Operator(sig.Key)
		}
	}
	switch {
	case keys == nil:
	case errors.Is(err, ErrUnsigned):
		v.Accepted, v.Reason = false, "not signed: this cluster requires operator commands signed with an operator key (lifeboat ... --nats-nkey operator.nk)"
	case err != nil:
		v.Accepted, v.Reason = false, "bad signature: "+err.Error()
	case v.Operator == "":
		v.Accepted, v.Reason = false, fmt.Sprintf("signed by %s, which is no operator key of this cluster's cluster.json", sig.Key)
	}
	return v
}
