package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/client"
)

func newEventsCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "events",
		Short: "Watch, publish and inspect events (tail, publish, dlq)",
	}
	c.AddCommand(newEventsTailCmd(), newEventsPublishCmd(), newEventsDLQCmd())
	return c
}

// lookupType finds a catalog type by Go name (HostDown), CloudEvents type
// (io.lifeboat.host.down.v1) or subject (lifeboat.event.host.down).
func lookupType(s string) (events.Type, bool) {
	if t, ok := events.BySubject(s); ok {
		return t, true
	}
	if t, ok := events.ByCEType(s); ok {
		return t, true
	}
	for _, t := range events.Catalog() {
		if strings.EqualFold(t.Name, s) {
			return t, true
		}
	}
	return events.Type{}, false
}

func typeNames() string {
	var names []string
	for _, t := range events.Catalog() {
		if t.Kind != events.Heartbeat {
			names = append(names, t.Name)
		}
	}
	return strings.Join(names, ", ")
}

// shownMessage is one message as the events commands print it.
type shownMessage struct {
	Stream   string            `json:"stream"`
	Seq      uint64            `json:"seq"`
	Time     time.Time         `json:"time"`
	Subject  string            `json:"subject"`
	ID       string            `json:"id,omitempty"`
	Type     string            `json:"type,omitempty"`
	Reason   string            `json:"reason,omitempty"`
	From     string            `json:"from,omitempty"`
	Consumer string            `json:"consumer,omitempty"`
	Headers  map[string]string `json:"headers,omitempty"`
	Body     json.RawMessage   `json:"body,omitempty"`
	RawBody  string            `json:"raw_body,omitempty"`
}

func showMessage(m jetstream.Msg) shownMessage {
	s := shownMessage{Subject: m.Subject(), Headers: map[string]string{}}
	if md, err := m.Metadata(); err == nil {
		s.Stream, s.Seq, s.Time = md.Stream, md.Sequence.Stream, md.Timestamp.UTC()
	}
	for k, v := range m.Headers() {
		if len(v) > 0 {
			s.Headers[k] = v[0]
		}
	}
	s.ID = s.Headers[bus.HeaderID]
	s.Type = s.Headers[bus.HeaderType]
	s.Reason = s.Headers[bus.HeaderDLQReason]
	s.From = s.Headers[bus.HeaderDLQSubject]
	s.Consumer = s.Headers[bus.HeaderDLQConsumer]
	if json.Valid(m.Data()) {
		s.Body = json.RawMessage(m.Data())
	} else {
		s.RawBody = string(m.Data())
	}
	return s
}

func (s shownMessage) body() string {
	if s.Body != nil {
		return string(s.Body)
	}
	return fmt.Sprintf("%q", s.RawBody)
}

func newEventsTailCmd() *cobra.Command {
	var cf clientFlags
	var typ string
	var all bool
	var count int
	c := &cobra.Command{
		Use:   "tail",
		Short: "Print events as they arrive (Ctrl-C to stop)",
		Example: `  lifeboat events tail
  lifeboat events tail --type HostDown --json
  lifeboat events tail --all --count 10`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			filter := events.SubjectEvents
			stream := events.StreamEvents
			if typ != "" {
				t, ok := lookupType(typ)
				if !ok || t.Kind == events.Heartbeat {
					return usagef(c, "--type %q is not an event or command type (one of: %s)", typ, typeNames())
				}
				filter = t.Subject
				if t.Kind == events.Command {
					stream = events.StreamCommands
				}
			}
			nc, js, err := cf.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := context.WithCancel(c.Context())
			defer cancel()
			cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverNewPolicy}
			if all {
				cfg.DeliverPolicy = jetstream.DeliverAllPolicy
			}
			cctx, ccancel := cf.ctx(ctx)
			cons, err := js.OrderedConsumer(cctx, stream, cfg)
			ccancel()
			if err != nil {
				return fmt.Errorf("events tail: %w", err)
			}
			it, err := cons.Messages()
			if err != nil {
				return fmt.Errorf("events tail: %w", err)
			}
			go func() { <-ctx.Done(); it.Stop() }()
			out := c.OutOrStdout()
			for n := 0; count == 0 || n < count; n++ {
				m, err := it.Next()
				if err != nil {
					if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("events tail: %w", err)
				}
				printShown(out, showMessage(m), cf.json)
			}
			return nil
		},
	}
	cf.add(c)
	c.Flags().StringVar(&typ, "type", "", "only this type (HostDown, io.lifeboat.host.down.v1 or its subject)")
	c.Flags().BoolVar(&all, "all", false, "start from the oldest event kept, not from now")
	c.Flags().IntVar(&count, "count", 0, "stop after this many (0: until interrupted)")
	return c
}

func printShown(w io.Writer, s shownMessage, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(s)
		fmt.Fprintln(w, string(b))
		return
	}
	fmt.Fprintf(w, "%s  #%d  %s  %s\n", s.Time.Format(time.RFC3339Nano), s.Seq, s.Subject, s.body())
}

func newEventsPublishCmd() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:   "publish TYPE JSON",
		Short: "Validate and publish one event or command",
		Long: `Publish one event or command. TYPE is a catalog name (HostDown), a
CloudEvents type (io.lifeboat.host.down.v1) or a subject. The JSON is
validated against the type's schema first; an invalid one is refused and
nothing is sent.`,
		Example: `  lifeboat events publish HostDown '{"host":"hot-1","reason":"power"}'
  lifeboat events publish BackupTake '{"plan":"wr","kind":"manual"}'`,
		Args: exactArgs(2, "TYPE", "JSON"),
		RunE: func(c *cobra.Command, args []string) error {
			t, ok := lookupType(args[0])
			if !ok || t.Kind == events.Heartbeat {
				return usagef(c, "%q is not an event or command type (one of: %s)", args[0], typeNames())
			}
			body := []byte(args[1])
			if err := events.Validate(t, body); err != nil {
				return usagef(c, "%v", err)
			}
			nc, js, err := cf.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := cf.ctx(c.Context())
			defer cancel()
			env := bus.NewRawEnvelope(ctx, "lifeboat/cli", t.CEType, t.Subject, body)
			ack, err := client.Publish(ctx, js, env)
			if err != nil {
				return fmt.Errorf("events publish: %w", err)
			}
			if cf.json {
				return printJSON(c.OutOrStdout(), map[string]any{"id": env.ID, "subject": env.Subject, "stream": ack.Stream, "seq": ack.Sequence})
			}
			fmt.Fprintf(c.OutOrStdout(), "published %s %s (%s #%d)\n", t.Name, env.ID, ack.Stream, ack.Sequence)
			return nil
		},
	}
	cf.add(c)
	return c
}

func newEventsDLQCmd() *cobra.Command {
	var cf clientFlags
	var svc string
	var limit int
	c := &cobra.Command{
		Use:   "dlq",
		Short: "List dead letters with the reason each was refused",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			filter := events.SubjectDLQ
			if svc != "" {
				filter = events.DLQSubject(svc)
			}
			nc, js, err := cf.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := cf.ctx(c.Context())
			defer cancel()
			letters, err := readAll(ctx, js, events.StreamDLQ, filter, limit)
			if err != nil {
				return fmt.Errorf("events dlq: %w", err)
			}
			if cf.json {
				return printJSON(c.OutOrStdout(), letters)
			}
			out := c.OutOrStdout()
			if len(letters) == 0 {
				fmt.Fprintln(out, "no dead letters")
				return nil
			}
			for _, s := range letters {
				fmt.Fprintf(out, "%s  #%d  %s  from %s (%s)\n    reason: %s\n    body:   %s\n",
					s.Time.Format(time.RFC3339), s.Seq, s.Subject, s.From, s.Consumer, s.Reason, s.body())
			}
			return nil
		},
	}
	cf.add(c)
	c.Flags().StringVar(&svc, "service", "", "only this service's dead letters")
	c.Flags().IntVar(&limit, "limit", 1000, "at most this many, newest last")
	return c
}

// readAll reads every message of stream matching filter (up to limit, the
// newest ones) without a durable consumer.
func readAll(ctx context.Context, js jetstream.JetStream, stream, filter string, limit int) ([]shownMessage, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, err
	}
	var total uint64
	for _, n := range info.State.Subjects {
		total += n
	}
	out := []shownMessage{}
	if total == 0 {
		return out, nil
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, err
	}
	for uint64(len(out)) < total {
		m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			return out, err
		}
		out = append(out, showMessage(m))
		if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
			break
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}
