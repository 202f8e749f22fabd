package bus

// Messaging over nats.go's jetstream package, in one thin layer: a
// JetStream message becomes a Delivery once, and a handler's verdict goes
// straight back to JetStream.
//
// Why not Watermill (its Router and middleware, or watermill-nats/v2):
// group commit. A Lifeboat service applies many messages in one SQLite
// transaction, so that one fsync makes a whole batch durable (the
// throughput bar of DESIGN §5 with synchronous=FULL). Watermill's model is
// one message, one handler call, one ack: its subscribers (watermill-nats
// included) hand out a message and wait for its ack before the next, and
// its Router's middleware (retry, poison queue, recoverer) wraps that one
// call, so none of it can see that a message's fate is only known when the
// batch it was part of commits, is rolled back and applied again guarded,
// or fails to commit. The runtime also needs what Watermill's message does
// not carry: the stream sequence (the id of a header-less message from
// `nats pub`), the delivery count (bounded retries before the dead-letter
// subject), a redelivery delay chosen per delivery, and Nats-Msg-Id from
// the event id on publish. So the retry, dead-letter, tracing and panic
// recovery that Watermill would give as middleware are done once per batch
// in pkg/service (consume.go), and this file is the only layer between
// JetStream and them.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher publishes envelopes to JetStream and returns once every one of
// them is acknowledged (PubAck) or has failed.
type Publisher struct {
	js      jetstream.JetStream
	timeout time.Duration
}

// NewPublisher returns a publisher on js.
func NewPublisher(js jetstream.JetStream) *Publisher {
	return &Publisher{js: js, timeout: 10 * time.Second}
}

// Publish sends envs in order, each with Nats-Msg-Id set to its id so that
// JetStream drops a republished duplicate. They are published
// asynchronously and their acks awaited together.
func (p *Publisher) Publish(ctx context.Context, envs ...Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, 0, len(envs))
	for _, e := range envs {
		f, err := p.js.PublishMsgAsync(&nats.Msg{Subject: e.Subject, Data: e.Body, Header: nats.Header(e.Header)}, jetstream.WithMsgID(e.ID))
		if err != nil {
			return fmt.Errorf("bus: publish %s: %w", e.Subject, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("bus: publish %s: %w", envs[i].Subject, ExplainUnavailable(context.WithoutCancel(ctx), p.js, envs[i].Subject, err))
		case <-ctx.Done():
			return fmt.Errorf("bus: publish %s: no PubAck: %w", envs[i].Subject, ExplainUnavailable(context.WithoutCancel(ctx), p.js, envs[i].Subject, ctx.Err()))
		}
	}
	return nil
}

// ConsumerConfig shapes the durable consumer behind a subscription.
type ConsumerConfig struct {
	// Service owns the consumer; durable names start with it.
	Service string
	// MaxDeliver bounds redelivery of a message whose handler fails: on the
	// MaxDeliver-th delivery a failure dead-letters it. JetStream itself is
	// told to redeliver without limit, because a delivery that never reached
	// a handler (the process was killed with it in flight) must not use up a
	// message's chances: dropping it after a crash loop would lose it.
	MaxDeliver int
	// Backoff is the redelivery delay after the n-th failed delivery (the
	// last entry repeats).
	Backoff []time.Duration
	// AckWait is how long JetStream waits for an ack before redelivering.
	AckWait time.Duration
	// MaxAckPending bounds messages in flight.
	MaxAckPending int
	// Buffer is how many messages may wait for the handler.
	Buffer int
}

// NewConsumerConfig returns the defaults for service.
func NewConsumerConfig(service string) ConsumerConfig {
	return ConsumerConfig{
		Service:       service,
		MaxDeliver:    5,
		Backoff:       []time.Duration{100 * time.Millisecond, time.Second, 5 * time.Second, 30 * time.Second},
		AckWait:       30 * time.Second,
		MaxAckPending: 4096,
		Buffer:        512,
	}
}

// Subscriber consumes JetStream subject filters through durable consumers
// and hands out Deliveries; the handler acks or naks each.
type Subscriber struct {
	js     jetstream.JetStream
	cfg    ConsumerConfig
	logger *slog.Logger

	mu     sync.Mutex
	closed bool
	stops  []func()
}

// NewSubscriber returns a subscriber whose consumers belong to cfg.Service.
func NewSubscriber(js jetstream.JetStream, cfg ConsumerConfig, logger *slog.Logger) *Subscriber {
	if logger == nil {
		logger = slog.Default()
	}
	return &Subscriber{js: js, cfg: cfg, logger: logger}
}

// DurableName joins parts (a service, a host, what it reads) into a
// consumer name, with '_' between them and the characters JetStream
// forbids in a name replaced.
func DurableName(parts ...string) string {
	r := strings.NewReplacer(".", "_", "*", "STAR", ">", "ALL", " ", "_", "/", "_", "\\", "_")
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = r.Replace(p)
	}
	return strings.Join(out, "_")
}

// Consumer is the durable consumer behind a subscription.
type Consumer struct {
	Durable string
	Stream  string
	// Filters are the subjects it reads, in stream order across them.
	Filters []string
	// StartSeq, when not 0, is the stream sequence a consumer created now
	// starts at; an existing consumer keeps its place (the runtime deletes
	// one that must start elsewhere).
	StartSeq uint64
}

// Subscribe creates (or updates) the durable consumer and streams its
// messages until ctx ends or the subscriber closes; then the channel
// closes, and the messages it still buffered are handed back to JetStream
// for prompt redelivery.
func (s *Subscriber) Subscribe(ctx context.Context, c Consumer) (<-chan *Delivery, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("bus: subscriber closed")
	}
	s.mu.Unlock()
	if len(c.Filters) == 0 {
		return nil, fmt.Errorf("bus: consumer %s has no subject", c.Durable)
	}
	for _, f := range c.Filters {
		stream, err := StreamFor(f)
		if err != nil {
			return nil, err
		}
		if c.Stream == "" {
			c.Stream = stream
		}
		if stream != c.Stream {
			return nil, fmt.Errorf("bus: consumer %s: subject %q is not on stream %s", c.Durable, f, c.Stream)
		}
	}
	stream, durable := c.Stream, c.Durable
	cfg := jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   fmt.Sprintf("lifeboat %s: %s", s.cfg.Service, strings.Join(c.Filters, " ")),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: s.cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if len(c.Filters) == 1 {
		cfg.FilterSubject = c.Filters[0]
	} else {
		cfg.FilterSubjects = c.Filters
	}
	if c.StartSeq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, c.StartSeq
	}
	// While a cluster re-forms (a node was killed, the stream elects a
	// leader) creating a consumer times out: retried until ctx ends. An
	// existing consumer keeps its start (JetStream cannot change it).
	var cons jetstream.Consumer
	err := retryForming(ctx, s.logger, func() string { return "a majority of the cluster's nodes must run" },
		fmt.Sprintf("consumer %s on %s", durable, stream), func(ctx context.Context) error {
			var err error
			if cons, err = s.js.Consumer(ctx, stream, durable); err == nil {
				cur := cons.CachedInfo().Config
				cfg.DeliverPolicy, cfg.OptStartSeq = cur.DeliverPolicy, cur.OptStartSeq
			} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return err
			}
			cons, err = s.js.CreateOrUpdateConsumer(ctx, stream, cfg)
			return err
		})
	if err != nil {
		return nil, err
	}
	// Buffered, so that messages wait for the handler while it commits a
	// batch: the next batch is then as large as what arrived meanwhile.
	out := make(chan *Delivery, s.cfg.Buffer)
	var wg sync.WaitGroup // callbacks of this subscription
	subCtx, cancel := context.WithCancel(ctx)
	cc, err := cons.Consume(func(jm jetstream.Msg) {
		wg.Add(1)
		defer wg.Done()
		d := s.delivery(stream, jm)
		select {
		case out <- d:
		case <-subCtx.Done():
			// Not handed out: ask JetStream to redeliver it now.
			_ = jm.Nak()
		}
	},
		jetstream.PullMaxMessages(512),
		// Short pulls with frequent heartbeats: when a consumer's leader
		// changes (a node died, the cluster re-formed) a pull request can
		// be lost, and the client only notices it when two heartbeats are
		// missed. With the defaults (30 s pulls, 15 s heartbeats) a host
		// then applied nothing for about 30 s; now it re-pulls within
		// about 2 s.
		jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) {
				s.logger.Warn("consumer error", slog.String("consumer", durable), slog.String("error", err.Error()))
			}
		}))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("bus: consume %s: %w", durable, err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cc.Stop()
			<-cc.Closed()
			cancel()
		})
	}
	s.mu.Lock()
	s.stops = append(s.stops, stop)
	s.mu.Unlock()
	go func() {
		<-subCtx.Done()
		stop()
		wg.Wait()
		for {
			select {
			case d := <-out:
				d.Nak()
				continue
			default:
			}
			break
		}
		close(out)
	}()
	return out, nil
}

func (s *Subscriber) delivery(stream string, jm jetstream.Msg) *Delivery {
	d := &Delivery{Message: Message{Subject: jm.Subject(), Stream: stream, Body: jm.Data(), Header: map[string][]string(jm.Headers())}, msg: jm, backoff: s.backoff}
	if md, err := jm.Metadata(); err == nil {
		d.StreamSeq, d.Delivered, d.Timestamp = md.Sequence.Stream, md.NumDelivered, md.Timestamp
	}
	if d.Header == nil {
		d.Header = map[string][]string{}
	}
	d.ID = d.HeaderValue(HeaderID)
	if d.ID == "" {
		// A header-less message from an outside publisher: its identity is
		// its place in the stream.
		d.ID = stream + "-" + strconv.FormatUint(d.StreamSeq, 10)
	}
	return d
}

func (s *Subscriber) backoff(delivered uint64) time.Duration {
	if len(s.cfg.Backoff) == 0 {
		return time.Second
	}
	i := int(delivered) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s.cfg.Backoff) {
		i = len(s.cfg.Backoff) - 1
	}
	return s.cfg.Backoff[i]
}

// Close stops every consumer.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	stops := s.stops
	s.stops = nil
	s.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
	return nil
}

// Message is a consumed message as a handler sees it: what it is, where it
// stands in its stream, and how often it was delivered.
type Message struct {
	// ID is the CloudEvents id, or "<stream>-<seq>" for a header-less message
	// published by an outside client.
	ID        string
	Subject   string
	Stream    string
	StreamSeq uint64
	Delivered uint64 // how many times JetStream delivered it, from 1
	Timestamp time.Time
	Header    map[string][]string
	Body      []byte
}

// HeaderValue is the first value of header key.
func (m Message) HeaderValue(key string) string { return nats.Header(m.Header).Get(key) }

// Delivery is a consumed message with the means to settle it, which only
// the consumer loop holds.
type Delivery struct {
	Message
	msg     jetstream.Msg
	backoff func(delivered uint64) time.Duration
}

// Ack tells JetStream the message is done with.
func (d *Delivery) Ack() error {
	if d.msg == nil {
		return nil
	}
	return d.msg.Ack()
}

// Nak asks JetStream to redeliver the message after the consumer's backoff
// for its delivery count.
func (d *Delivery) Nak() {
	if d.msg != nil {
		_ = d.msg.NakWithDelay(d.backoff(d.Delivered))
	}
}
