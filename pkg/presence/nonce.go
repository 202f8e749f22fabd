package presence

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// NonceFile is the nonce's file in the data directory.
const NonceFile = "presence.nonce"

// Nonce is a data directory's secret: 32 random bytes, hex, created at the
// first start and reused after, so that a process restarted from the same
// directory is recognised as the one that held the host's presence. Only
// its hash is ever sent.
type Nonce struct {
	hash string
}

// Hash is the hex SHA-256 of the nonce: what a presence record carries.
func (n Nonce) Hash() string { return n.hash }

// LoadNonce reads dir's nonce, creating it (0600, written to a temporary
// file, fsynced and renamed) when there is none. Hold the directory's lock
// (LockDir) first: the nonce then stands for one live process.
func LoadNonce(dir string) (Nonce, error) {
	path := filepath.Join(dir, NonceFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createNonce(dir, path)
	}
	if err != nil {
		return Nonce{}, fmt.Errorf("presence: nonce: %w", err)
	}
	text := strings.TrimSpace(string(data))
	if raw, err := hex.DecodeString(text); err != nil || len(raw) != 32 {
		return Nonce{}, fmt.Errorf("presence: nonce file %s is damaged (want 64 hex digits): remove it only if no other process runs as this host: a new nonce is then made, and this host's start is refused until its old claim lapses (within the presence TTL)", path)
	}
	return nonceOf(text), nil
}

func nonceOf(text string) Nonce {
	sum := sha256.Sum256([]byte(text))
	return Nonce{hash: hex.EncodeToString(sum[:])}
}

func createNonce(dir, path string) (Nonce, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Nonce{}, fmt.Errorf("presence: nonce: %w", err)
	}
	text := hex.EncodeToString(raw[:])
	f, err := os.CreateTemp(dir, NonceFile+".tmp-*")
	if err != nil {
		return Nonce{}, fmt.Errorf("presence: nonce: %w", err)
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.WriteString(text + "\n")
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return Nonce{}, fmt.Errorf("presence: nonce: %w", err)
	}
	return nonceOf(text), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
