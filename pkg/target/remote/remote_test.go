package remote_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/chunk"
	"lifeboat.dev/pkg/target"
	"lifeboat.dev/pkg/target/dir"
	"lifeboat.dev/pkg/target/remote"
	"lifeboat.dev/pkg/target/targettest"
)

// receiver serves host h2's dir targets (one per plan, under root) on nc,
// as its sync service does.
func receiver(t *testing.T, nc *nats.Conn, root string) {
	t.Helper()
	s := &remote.Server{Resolve: func(plan, name string) (*dir.Dir, error) {
		// Plan "other" is misconfigured into app's directory.
		if (plan != "app" && plan != "other") || name != "" {
			return nil, fmt.Errorf("h2 keeps no dir target %q for plan %q", name, plan)
		}
		return dir.New(filepath.Join(root, "app"), plan), nil
	}}
	svc, err := remote.Serve(nc, "h2", s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
}

func TestConformance(t *testing.T) {
	_, b := bustest.Embedded(t)
	root := t.TempDir()
	receiver(t, b.NC, root)
	sender, err := nats.Connect(b.NC.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	path := filepath.Join(root, "app")
	targettest.Run(t, targettest.Kind{
		Open:          func(t *testing.T) target.Target { return remote.New(sender, "h2", "app") },
		OpenOtherPlan: func(t *testing.T) target.Target { return remote.New(sender, "h2", "other") },
		Check: func(t *testing.T, srcDir, name string) {
			t.Helper()
			if _, err := backup.Verify(context.Background(), path, name); err != nil {
				t.Fatal(err)
			}
		},
		Corrupt: func(t *testing.T, h chunk.Hash) {
			if err := os.WriteFile(filepath.Join(path, dir.StateDir, "chunks", h.String()), []byte("bit rot"), 0o640); err != nil {
				t.Fatal(err)
			}
		},
	})
}

func TestUnknownPlanAndHostAreNamed(t *testing.T) {
	_, b := bustest.Embedded(t)
	receiver(t, b.NC, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := remote.New(b.NC, "h2", "nope").List(ctx); err == nil || !strings.Contains(err.Error(), `no dir target "" for plan "nope"`) {
		t.Errorf("unknown plan: %v", err)
	}
	named := remote.New(b.NC, "h2", "app")
	named.Name = "usb"
	if _, err := named.List(ctx); err == nil || !strings.Contains(err.Error(), `no dir target "usb" for plan "app"`) {
		t.Errorf("unknown named target: %v", err)
	}
	if _, err := remote.New(b.NC, "h9", "app").List(ctx); err == nil || !strings.Contains(err.Error(), "is `lifeboat up` running on h9?") {
		t.Errorf("unknown host: %v", err)
	}
}

// TestWireBytes: the next backup of a 32 MiB database after 1% of its
// pages were rewritten costs at most 2% of its bytes on the sender's
// NATS connection, chunk lists, recipe and headers included.
func TestWireBytes(t *testing.T) {
	_, b := bustest.Embedded(t)
	root := t.TempDir()
	receiver(t, b.NC, root)
	sender, err := nats.Connect(b.NC.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	const pages, pageSize = 8192, 4096
	db := make([]byte, pages*pageSize)
	if _, err := rand.Read(db); err != nil {
		t.Fatal(err)
	}
	copy(db, "SQLite format 3\x00")
	binary.BigEndian.PutUint16(db[16:], pageSize)
	src := t.TempDir()
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.Local)
	take := func(at time.Time) string {
		name, _, err := backup.Write(context.Background(), src, backup.Manifest{Instance: "app", Plan: "app", StoreKind: "sqlite", Kind: backup.KindHash, TakenAt: at},
			func(ctx context.Context, dir string) (backup.Info, error) {
				return backup.Info{ConsistentAt: at}, os.WriteFile(filepath.Join(dir, "store.db"), db, 0o600)
			})
		if err != nil {
			t.Fatal(err)
		}
		return name
	}
	tg := remote.New(sender, "h2", "app")
	first := take(at)
	if _, err := target.Send(context.Background(), tg, src, first, "", target.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	for range pages / 100 {
		var i [2]byte
		rand.Read(i[:])
		p := 1 + int(binary.BigEndian.Uint16(i[:]))%(pages-1)
		rand.Read(db[p*pageSize : (p+1)*pageSize])
	}
	second := take(at.Add(time.Hour))
	before := sender.Stats().OutBytes
	st, err := target.Send(context.Background(), tg, src, second, first, target.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wire := sender.Stats().OutBytes - before
	pct := 100 * float64(wire) / float64(len(db))
	t.Logf("1%% of pages rewritten: %d chunk bytes, %d bytes on the wire of %d (%.2f%%)", st.BytesSent, wire, len(db), pct)
	if pct > 2 {
		t.Errorf("%.2f%% of the backup on the wire, want at most 2%%", pct)
	}
	if _, err := backup.Verify(context.Background(), filepath.Join(root, "app"), second); err != nil {
		t.Fatal(err)
	}
}
