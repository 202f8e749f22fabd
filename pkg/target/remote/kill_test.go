package remote_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/target"
	"lifeboat.dev/pkg/target/dir"
	"lifeboat.dev/pkg/target/remote"
	"lifeboat.dev/pkg/testtool"
)

// The kill suite's helper processes: this test binary started again with
// killRole set runs a receiver or a sender instead of the tests.
const (
	killRole = "LIFEBOAT_KILL_ROLE" // receiver or sender
	killNATS = "LIFEBOAT_KILL_NATS" // the test's NATS URL
	killSrc  = "LIFEBOAT_KILL_SRC"  // the sender's backup directory
	killDst  = "LIFEBOAT_KILL_DST"  // the receiver's
)

func TestMain(m *testing.M) {
	switch os.Getenv(killRole) {
	case "receiver":
		os.Exit(runReceiver())
	case "sender":
		os.Exit(runSender())
	}
	os.Exit(m.Run())
}

// runReceiver serves host h2's dir target of plan app until killed.
func runReceiver() int {
	nc, err := nats.Connect(os.Getenv(killNATS))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	d := dir.New(os.Getenv(killDst), "app")
	s := &remote.Server{Resolve: func(plan, name string) (*dir.Dir, error) {
		if plan != "app" || name != "" {
			return nil, fmt.Errorf("no target %q of plan %q", name, plan)
		}
		return d, nil
	}}
	if _, err := remote.Serve(nc, "h2", s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println("ready")
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	<-stop
	return 0
}

// runSender ships every backup of the source the target lacks, oldest
// first, each against the newest one the target holds, as sync does; it
// exits 0 once the target holds them all, 1 on an error (the receiver
// killed under it).
func runSender() int {
	nc, err := nats.Connect(os.Getenv(killNATS))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer nc.Close()
	ctx := context.Background()
	src := os.Getenv(killSrc)
	tg := remote.New(nc, "h2", "app")
	tg.Timeout, tg.CommitTimeout = 2*time.Second, 10*time.Second
	entries, err := backup.List(src)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for _, e := range entries {
		held, err := tg.List(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		names := make([]string, 0, len(held))
		for _, h := range held {
			names = append(names, h.Name)
		}
		if slices.Contains(names, e.Name) {
			continue
		}
		base := ""
		if len(names) > 0 {
			base = names[len(names)-1]
		}
		// Small puts, so that a kill lands between them as well as in one.
		if _, err := target.Send(ctx, tg, src, e.Name, base, target.SendOptions{Batch: 64 << 10}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// killSuite is the number of kill -9s: at least 30 in make test, more
// with LIFEBOAT_KILLS (make test-long).
func killSuite(t *testing.T) int {
	n := 30
	if s := os.Getenv("LIFEBOAT_KILLS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("LIFEBOAT_KILLS=%q: want a positive number", s)
		}
		n = v
	}
	return n
}

// TestKill9SenderOrReceiver kills the sending or the receiving process
// with SIGKILL at random moments of a chain of transfers, and after each
// kill checks, reading only the target's disk, that every backup the
// target lists verifies against its manifest. Restarted each time, the
// two finish the chain, and the target holds every backup.
func TestKill9SenderOrReceiver(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 suite: not in -short")
	}
	kills := killSuite(t)
	ns := bustest.Server(t)
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "app")

	// A chain of backups of a 4 MiB database, 5% of pages rewritten
	// between two, enough for the kills to land at every stage.
	const pages, pageSize = 1024, 4096
	dbBytes := make([]byte, pages*pageSize)
	_, _ = rand.Read(dbBytes)
	copy(dbBytes, "SQLite format 3\x00")
	binary.BigEndian.PutUint16(dbBytes[16:], pageSize)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := mrand.New(mrand.NewPCG(seed, 7))
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.Local)
	taken := 0
	addBackup := func() {
		taken++
		for range pages / 20 {
			p := 1 + r.IntN(pages-1)
			_, _ = rand.Read(dbBytes[p*pageSize : (p+1)*pageSize])
		}
		at = at.Add(time.Hour)
		_, _, err := backup.Write(context.Background(), src, backup.Manifest{Instance: "app", Plan: "app", StoreKind: "sqlite", Kind: backup.KindHash, TakenAt: at},
			func(ctx context.Context, dir string) (backup.Info, error) {
				return backup.Info{ConsistentAt: at}, os.WriteFile(filepath.Join(dir, "store.db"), dbBytes, 0o600)
			})
		if err != nil {
			t.Fatal(err)
		}
	}
	addBackup()

	env := []string{killNATS + "=" + ns.ClientURL(), killSrc + "=" + src, killDst + "=" + dst}
	start := func(role string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(append(os.Environ(), killRole+"="+role), env...)
		// A sender's errors are expected (its receiver killed under it):
		// quiet unless it fails otherwise.
		if role == "receiver" {
			cmd.Stderr = os.Stderr
		} else {
			cmd.Stderr = &bytes.Buffer{}
		}
		if role == "receiver" {
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ready := make([]byte, 6)
			if _, err := out.Read(ready); err != nil {
				t.Fatalf("receiver: %v", err)
			}
			return cmd
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	wait := func(cmd *exec.Cmd) <-chan error {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		return done
	}
	recv := start("receiver")
	recvDone := wait(recv)
	t.Cleanup(func() { _ = recv.Process.Kill() })

	// Every backup the target lists verifies, read from its disk alone.
	check := func(when string) {
		t.Helper()
		entries, err := backup.List(dst)
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if _, err := backup.Verify(context.Background(), dst, e.Name); err != nil {
				t.Fatalf("%s: the target lists %s, which does not verify: %v", when, e.Name, err)
			}
		}
	}

	senderKills, receiverKills, finished := 0, 0, 0
	span := time.Second
	for i := 0; senderKills+receiverKills < kills; i++ {
		// The source keeps taking backups, while the target is not far
		// behind: the kills land in every transfer of the chain, its
		// commits included, not over and over in one.
		if held, _ := backup.List(dst); i%3 == 0 && len(held)+2 >= taken {
			addBackup()
		}
		send := start("sender")
		started := time.Now()
		sendDone := wait(send)
		// A random moment within the time a sender last took to finish
		// (its start, the transfer and the commit). A sender that
		// finished first was not killed, and does not count.
		time.Sleep(time.Duration(r.Int64N(int64(span))))
		victim, name := send, "sender"
		if r.IntN(2) == 0 {
			victim, name = recv, "receiver"
		}
		_ = victim.Process.Signal(syscall.SIGKILL)
		if name == "receiver" {
			receiverKills++
			<-recvDone
			// The sender, its receiver gone, fails or finishes; it is
			// not what this kill is about.
			<-sendDone
			check(fmt.Sprintf("kill %d (receiver)", i+1))
			recv = start("receiver")
			recvDone = wait(recv)
			continue
		}
		err := <-sendDone
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 2 {
			t.Fatalf("sender: %v: %s", err, send.Stderr)
		}
		if errors.As(err, &exit) && exit.ExitCode() == -1 {
			senderKills++
		} else {
			finished++ // it finished before the kill
			span = time.Since(started)
		}
		check(fmt.Sprintf("kill %d (sender)", i+1))
	}
	t.Logf("%d kill -9s: %d of the receiver, %d of the sender (%d senders finished before their kill)", kills, receiverKills, senderKills, finished)
	if receiverKills == 0 || senderKills == 0 {
		t.Errorf("the kills missed a side: %d receiver, %d sender", receiverKills, senderKills)
	}

	// Left alone, they finish the chain.
	want, err := backup.List(src)
	if err != nil {
		t.Fatal(err)
	}
	held, _ := backup.List(dst)
	t.Logf("when the kills ended the target held %d of the source's %d backups", len(held), len(want))
	testtool.WaitFor(t, 2*time.Minute, func() error {
		if cmd := start("sender"); cmd.Wait() != nil {
			return fmt.Errorf("sender: %s", cmd.Stderr)
		}
		return nil
	})
	check("after the kills")
	got, err := backup.List(dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("the target holds %d backups, the source %d", len(got), len(want))
	}
	// What a killed attempt staged against a base the next attempt no
	// longer used waits for the grace period (dir.GracePeriod).
	left, _ := os.ReadDir(filepath.Join(dst, dir.StateDir, "chunks"))
	t.Logf("%d chunks left staged by abandoned attempts, collected after %s", len(left), dir.GracePeriod)
	_ = recv.Process.Signal(syscall.SIGTERM)
	<-recvDone
}
