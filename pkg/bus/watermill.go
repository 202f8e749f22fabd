package bus

// Watermill over nats.go's jetstream package.
//
// watermill-nats/v2 ships a JetStream publisher and subscriber, but its
// subscriber hands out one message at a time and waits for its ack before the
// next, and it builds consumers from a topic through its own naming. Lifeboat
// needs several messages in flight per consumer so that a service can commit a
// batch of them in one SQLite transaction (group commit: the throughput bar of
// DESIGN §5 with an fsync per commit), per-message Nats-Msg-Id from the
// envelope, redelivery backoff chosen per delivery, and the raw JetStream
// metadata (stream sequence, delivery count) to name header-less messages and
// bound retries. This thin adapter implements Watermill's message.Publisher
// and message.Subscriber over nats.go's jetstream package, so handlers still
// see plain Watermill messages.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher publishes Watermill messages to JetStream and returns once every
// one of them is acknowledged (PubAck) or has failed.
type Publisher struct {
	js      jetstream.JetStream
	timeout time.Duration
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher returns a publisher on js.
func NewPublisher(js jetstream.JetStream) *Publisher {
	return &Publisher{js: js, timeout: 10 * time.Second}
}

// Publish sends messages to the subject topic, each with Nats-Msg-Id set to
// its UUID so that JetStream drops a republished duplicate. Messages are
// published asynchronously and their acks awaited together.
func (p *Publisher) Publish(topic string, messages ...*message.Message) error {
	if len(messages) == 0 {
		return nil
	}
	ctx := messages[0].Context()
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, 0, len(messages))
	for _, m := range messages {
		nm := &nats.Msg{Subject: topic, Data: m.Payload, Header: nats.Header{}}
		for k, v := range m.Metadata {
			if !strings.HasPrefix(k, "_") {
				nm.Header.Set(k, v)
			}
		}
		f, err := p.js.PublishMsgAsync(nm, jetstream.WithMsgID(m.UUID))
		if err != nil {
			return fmt.Errorf("bus: publish %s: %w", topic, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("bus: publish %s: %w", topic, err)
		case <-ctx.Done():
			return fmt.Errorf("bus: publish %s: no PubAck: %w", topic, ctx.Err())
		}
	}
	return nil
}

// Close does nothing: the connection belongs to the Bus.
func (p *Publisher) Close() error { return nil }

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

// Subscriber consumes a JetStream subject filter through a durable consumer
// and hands the messages out as Watermill messages. Acking a message acks it
// in JetStream; nacking it asks for redelivery after the backoff.
type Subscriber struct {
	js     jetstream.JetStream
	cfg    ConsumerConfig
	logger *slog.Logger

	mu     sync.Mutex
	closed bool
	stops  []func()
	kill   chan struct{} // closed by Close: settle what is still unsettled
}

var _ message.Subscriber = (*Subscriber)(nil)

// NewSubscriber returns a subscriber whose consumers belong to cfg.Service.
func NewSubscriber(js jetstream.JetStream, cfg ConsumerConfig, logger *slog.Logger) *Subscriber {
	if logger == nil {
		logger = slog.Default()
	}
	return &Subscriber{js: js, cfg: cfg, logger: logger, kill: make(chan struct{})}
}

// DurableName is the consumer name for service's subscription to subject:
// `<service>_<subject>` with the characters JetStream forbids replaced.
func DurableName(service, subject string) string {
	r := strings.NewReplacer(".", "_", "*", "STAR", ">", "ALL", " ", "_")
	return service + "_" + r.Replace(subject)
}

// Subscribe creates (or updates) the durable consumer for the subject filter
// topic and streams its messages until ctx ends or the subscriber closes.
// When ctx ends no more messages are handed out, but those already handed
// out can still be acked until Close; the channel closes after Close.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("bus: subscriber closed")
	}
	s.mu.Unlock()
	stream, err := StreamFor(topic)
	if err != nil {
		return nil, err
	}
	durable := DurableName(s.cfg.Service, topic)
	cons, err := s.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   fmt.Sprintf("lifeboat %s: %s", s.cfg.Service, topic),
		FilterSubject: topic,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: s.cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: consumer %s on %s: %w", durable, stream, err)
	}
	// Buffered, so that messages wait for the handler while it commits a
	// batch: the next batch is then as large as what arrived meanwhile.
	out := make(chan *message.Message, s.cfg.Buffer)
	var wg sync.WaitGroup // callbacks and settlers of this subscription
	subCtx, cancel := context.WithCancel(ctx)
	cc, err := cons.Consume(func(jm jetstream.Msg) {
		wg.Add(1)
		defer wg.Done()
		m := s.toWatermill(subCtx, stream, jm)
		select {
		case out <- m:
		case <-subCtx.Done():
			// Not handed out: JetStream redelivers it after AckWait; ask now.
			_ = jm.Nak()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.settle(jm, m)
		}()
	}, jetstream.PullMaxMessages(512), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
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
		close(out)
	}()
	return out, nil
}

// settle waits for the handler's verdict on m and passes it to JetStream.
func (s *Subscriber) settle(jm jetstream.Msg, m *message.Message) {
	select {
	case <-m.Acked():
		if err := jm.Ack(); err != nil {
			s.logger.Warn("ack failed; JetStream will redeliver and the inbox will drop it",
				slog.String("subject", jm.Subject()), slog.String("error", err.Error()))
		}
	case <-m.Nacked():
		n := uint64(1)
		if md, err := jm.Metadata(); err == nil {
			n = md.NumDelivered
		}
		_ = jm.NakWithDelay(s.backoff(n))
	case <-s.kill:
		// Closed with the message unsettled: redeliver it promptly.
		_ = jm.Nak()
	}
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

func (s *Subscriber) toWatermill(ctx context.Context, stream string, jm jetstream.Msg) *message.Message {
	var seq, delivered uint64
	var ts time.Time
	if md, err := jm.Metadata(); err == nil {
		seq, delivered, ts = md.Sequence.Stream, md.NumDelivered, md.Timestamp
	}
	h := jm.Headers()
	id := h.Get(HeaderID)
	if id == "" {
		// A header-less message from an outside publisher: its identity is
		// its place in the stream.
		id = stream + "-" + strconv.FormatUint(seq, 10)
	}
	m := message.NewMessage(id, jm.Data())
	for k, v := range h {
		if len(v) > 0 && !strings.HasPrefix(k, "_") {
			m.Metadata.Set(k, v[0])
		}
	}
	m.Metadata.Set(MetaSubject, jm.Subject())
	m.Metadata.Set(MetaStream, stream)
	m.Metadata.Set(MetaStreamSeq, strconv.FormatUint(seq, 10))
	m.Metadata.Set(MetaDelivered, strconv.FormatUint(delivered, 10))
	m.Metadata.Set(MetaTimestamp, ts.UTC().Format(time.RFC3339Nano))
	m.SetContext(ctx)
	return m
}

// Close stops every consumer; messages handed out but not settled are
// redelivered later.
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
	close(s.kill)
	return nil
}
