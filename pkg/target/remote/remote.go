// Package remote is a dir target on another host: bytes cross hosts only
// through NATS (no ssh, no shared file system). The receiving host's sync
// service answers the Server's endpoints, host-scoped, at
// lifeboat.api.sync.<host>.target-*, writing into the dir target it keeps
// for the plan; the sender holds a Client, which is a target.Target.
//
// Chunks travel as binary frames (32-byte SHA-256, 4-byte length, bytes),
// batched to under a NATS message's 1 MiB, so the bytes on the wire are
// the chunks' plus a few percent of framing and headers. A recipe, which
// for a first copy of a large database lists a hash per page, is sent
// zstd-compressed in pieces, each written at its offset into a file named
// by the recipe's hash, so a lost piece is sent again and a commit names
// exactly the recipe it means.
package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/chunk"
	"lifeboat.dev/pkg/target"
	"lifeboat.dev/pkg/target/dir"
)

// The endpoints, host-scoped on the receiving host's sync service.
const (
	EndpointList    = api.SyncTargetList
	EndpointMissing = api.SyncTargetMissing
	EndpointPut     = api.SyncTargetPut
	EndpointRecipe  = api.SyncTargetRecipe
	EndpointCommit  = api.SyncTargetCommit
	EndpointPrune   = api.SyncTargetPrune
)

// Headers of the binary requests.
const (
	headerPlan   = "Lifeboat-Plan"
	headerTarget = "Lifeboat-Target"
	headerRecipe = "Lifeboat-Recipe"
	headerOffset = "Lifeboat-Offset"
)

// Error codes, mapped back to the target package's errors by the Client.
const (
	codeBadRequest = "400"
	codeRefused    = "403"
	codeNotFound   = "404"
	codeExists     = "409"
	codeCorrupt    = "422"
	codeIncomplete = "424"
	codeInternal   = "500"
)

// pieceSize is the most recipe bytes one request carries.
const pieceSize = 512 << 10

type request struct {
	Plan string `json:"plan"`
	// Target is a named target of the receiving host's lifeboat.yaml
	// (sync.targets); "" is the plan's own directory there.
	Target string       `json:"target,omitempty"`
	Hashes []chunk.Hash `json:"hashes,omitempty"`
	Name   string       `json:"name,omitempty"`
	// Recipe and Size name a recipe sent in pieces (Commit).
	Recipe string `json:"recipe,omitempty"`
	Size   int64  `json:"size,omitempty"`
}

// Server answers a sending host on behalf of this host's dir targets.
type Server struct {
	// Resolve returns this host's dir target of plan: named (a target
	// of this host's configuration) or, for "", the plan's own
	// directory; or an error saying why this host keeps none (an unknown
	// plan or target, a directory that another plan uses).
	Resolve func(plan, name string) (*dir.Dir, error)
}

// Endpoint is one of the Server's endpoints.
type Endpoint struct {
	Name    string
	Handler micro.HandlerFunc
}

// Endpoints are the Server's endpoints, to be added host-scoped.
func (s *Server) Endpoints() []Endpoint {
	return []Endpoint{
		{EndpointList, s.list}, {EndpointMissing, s.missing}, {EndpointPut, s.put},
		{EndpointRecipe, s.recipe}, {EndpointCommit, s.commit}, {EndpointPrune, s.prune},
	}
}

// Serve answers host's target endpoints on nc with s, as host's sync
// service does, for a program without the service runtime (tests, make
// bench). Stopping the returned service stops it.
func Serve(nc *nats.Conn, host string, s *Server) (micro.Service, error) {
	svc, err := micro.AddService(nc, micro.Config{Name: "lifeboat-" + events.ServiceSync, Version: "0.0.1"})
	if err != nil {
		return nil, err
	}
	g := svc.AddGroup(events.HostAPISubject(events.ServiceSync, host, ""), micro.WithGroupQueueGroupDisabled())
	for _, ep := range s.Endpoints() {
		if err := g.AddEndpoint(ep.Name, ep.Handler); err != nil {
			_ = svc.Stop()
			return nil, err
		}
	}
	return svc, nc.Flush()
}

func (s *Server) decode(req micro.Request) (request, *dir.Dir, bool) {
	var r request
	if err := json.Unmarshal(req.Data(), &r); err != nil || r.Plan == "" {
		_ = req.Error(codeBadRequest, "want a JSON request naming the plan", nil)
		return r, nil, false
	}
	d, err := s.Resolve(r.Plan, r.Target)
	if err != nil {
		_ = req.Error(codeNotFound, err.Error(), nil)
		return r, nil, false
	}
	return r, d, true
}

func reply(req micro.Request, v any, err error) {
	if err != nil {
		code := codeInternal
		switch {
		case errors.Is(err, target.ErrIncomplete):
			code = codeIncomplete
		case errors.Is(err, backup.ErrCorrupt):
			code = codeCorrupt
		case errors.Is(err, fs.ErrExist):
			code = codeExists
		case errors.Is(err, target.ErrRefused):
			code = codeRefused
		}
		_ = req.Error(code, err.Error(), nil)
		return
	}
	_ = req.RespondJSON(v)
}

func (s *Server) list(req micro.Request) {
	if _, d, ok := s.decode(req); ok {
		held, err := d.List(context.Background())
		if held == nil {
			held = []target.Held{}
		}
		reply(req, held, err)
	}
}

func (s *Server) missing(req micro.Request) {
	if r, d, ok := s.decode(req); ok {
		m, err := d.Missing(context.Background(), r.Hashes)
		if m == nil {
			m = []chunk.Hash{}
		}
		reply(req, m, err)
	}
}

func (s *Server) put(req micro.Request) {
	d, err := s.Resolve(req.Headers().Get(headerPlan), req.Headers().Get(headerTarget))
	if err != nil {
		_ = req.Error(codeNotFound, err.Error(), nil)
		return
	}
	chunks, err := decodeChunks(req.Data())
	if err != nil {
		_ = req.Error(codeBadRequest, err.Error(), nil)
		return
	}
	reply(req, struct{}{}, d.Put(context.Background(), chunks))
}

// recipePath is where the pieces of a recipe are written.
func recipePath(d *dir.Dir, id string) (string, error) {
	if b, err := hex.DecodeString(id); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("recipe %q is not a hex SHA-256", id)
	}
	return filepath.Join(d.Path(), dir.StateDir, "recipes", id), nil
}

func (s *Server) recipe(req micro.Request) {
	h := req.Headers()
	d, err := s.Resolve(h.Get(headerPlan), h.Get(headerTarget))
	if err != nil {
		_ = req.Error(codeNotFound, err.Error(), nil)
		return
	}
	p, err := recipePath(d, h.Get(headerRecipe))
	var off int64
	if err == nil {
		_, err = fmt.Sscan(h.Get(headerOffset), &off)
	}
	if err != nil || off < 0 {
		_ = req.Error(codeBadRequest, fmt.Sprintf("a recipe piece needs %s (hex SHA-256) and %s: %v", headerRecipe, headerOffset, err), nil)
		return
	}
	reply(req, struct{}{}, writeAt(p, off, req.Data()))
}

func writeAt(p string, off int64, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, off); err != nil {
		f.Close()
		return fmt.Errorf("write recipe: %w (is the disk full?)", err)
	}
	return f.Close()
}

func (s *Server) commit(req micro.Request) {
	r, d, ok := s.decode(req)
	if !ok {
		return
	}
	p, err := recipePath(d, r.Recipe)
	if err != nil {
		_ = req.Error(codeBadRequest, err.Error(), nil)
		return
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && int64(len(b)) != r.Size) || (err == nil && hex.EncodeToString(sha(b)) != r.Recipe) {
		// Pieces lost or torn: the sender sends them again.
		_ = os.Remove(p)
		reply(req, nil, fmt.Errorf("%w: recipe %s is not here whole; send it again", target.ErrIncomplete, r.Recipe))
		return
	}
	if err != nil {
		reply(req, nil, err)
		return
	}
	rec, err := decodeRecipe(b)
	if err != nil {
		_ = os.Remove(p)
		_ = req.Error(codeBadRequest, err.Error(), nil)
		return
	}
	err = d.Commit(context.Background(), rec)
	if err == nil || !errors.Is(err, target.ErrIncomplete) {
		_ = os.Remove(p)
	}
	reply(req, struct{}{}, err)
}

func (s *Server) prune(req micro.Request) {
	if r, d, ok := s.decode(req); ok {
		reply(req, struct{}{}, d.Prune(context.Background(), r.Name))
	}
}

func sha(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

// Requester sends a request to the receiving host's endpoint and returns
// its reply: a NATS request to lifeboat.api.sync.<host>.<endpoint>.
type Requester func(ctx context.Context, endpoint string, header nats.Header, body []byte) (*nats.Msg, error)

// Client is the target of a plan on another host's sync service.
type Client struct {
	request Requester
	host    string
	plan    string
	// Name is a named target of that host's lifeboat.yaml (sync.targets);
	// "" (the default) is the plan's own directory there.
	Name string
	// Timeout bounds each request but Commit's (default 30 s).
	Timeout time.Duration
	// CommitTimeout bounds Commit, which reads and verifies the whole
	// backup at the target (default 30 min).
	CommitTimeout time.Duration
}

// New returns the target of plan on host's sync service, asked over nc.
func New(nc *nats.Conn, host, plan string) *Client {
	return NewRequester(func(ctx context.Context, endpoint string, header nats.Header, body []byte) (*nats.Msg, error) {
		m := nats.NewMsg(events.HostAPISubject(events.ServiceSync, host, endpoint))
		for k, v := range header {
			m.Header[k] = v
		}
		m.Data = body
		return nc.RequestMsgWithContext(ctx, m)
	}, host, plan)
}

// NewRequester returns the target of plan on host's sync service, asked
// through request (a service's runtime: service.Runtime.RequestHost).
func NewRequester(request Requester, host, plan string) *Client {
	return &Client{request: request, host: host, plan: plan, Timeout: 30 * time.Second, CommitTimeout: 30 * time.Minute}
}

func (c *Client) call(ctx context.Context, endpoint string, h nats.Header, body []byte, timeout time.Duration, out any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := c.request(ctx, endpoint, h, body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("target on %s: no sync service answers there (is `lifeboat up` running on %s?): %w", c.host, c.host, err)
	case err != nil:
		return fmt.Errorf("target on %s: %s: %w", c.host, endpoint, err)
	}
	if e := resp.Header.Get(micro.ErrorHeader); e != "" {
		err := fmt.Errorf("target on %s: %s", c.host, e)
		switch resp.Header.Get(micro.ErrorCodeHeader) {
		case codeIncomplete:
			err = fmt.Errorf("%w (%w)", err, target.ErrIncomplete)
		case codeCorrupt:
			err = fmt.Errorf("%w (%w)", err, backup.ErrCorrupt)
		case codeExists:
			err = fmt.Errorf("%w (%w)", err, fs.ErrExist)
		case codeRefused:
			err = fmt.Errorf("%w (%w)", err, target.ErrRefused)
		}
		return err
	}
	if out != nil {
		if err := json.Unmarshal(resp.Data, out); err != nil {
			return fmt.Errorf("target on %s: %s: unreadable answer (a lifeboat of another version?): %w", c.host, endpoint, err)
		}
	}
	return nil
}

func (c *Client) callJSON(ctx context.Context, endpoint string, r request, timeout time.Duration, out any) error {
	r.Plan, r.Target = c.plan, c.Name
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return c.call(ctx, endpoint, nil, b, timeout, out)
}

// List returns the backups the target holds.
func (c *Client) List(ctx context.Context) ([]target.Held, error) {
	var held []target.Held
	return held, c.callJSON(ctx, EndpointList, request{}, c.Timeout, &held)
}

// Missing returns those of hashes the target has not staged.
func (c *Client) Missing(ctx context.Context, hashes []chunk.Hash) ([]chunk.Hash, error) {
	var m []chunk.Hash
	return m, c.callJSON(ctx, EndpointMissing, request{Hashes: hashes}, c.Timeout, &m)
}

// Put sends chunks as binary frames.
func (c *Client) Put(ctx context.Context, chunks []target.Chunk) error {
	return c.call(ctx, EndpointPut, c.header(), encodeChunks(chunks), c.Timeout, nil)
}

// Commit sends the recipe in pieces, then asks the target to assemble it.
func (c *Client) Commit(ctx context.Context, r target.Recipe) error {
	b, err := encodeRecipe(r)
	if err != nil {
		return err
	}
	id := hex.EncodeToString(sha(b))
	for off := 0; off < len(b); off += pieceSize {
		h := c.header()
		h.Set(headerRecipe, id)
		h.Set(headerOffset, fmt.Sprint(off))
		if err := c.call(ctx, EndpointRecipe, h, b[off:min(off+pieceSize, len(b))], c.Timeout, nil); err != nil {
			return err
		}
	}
	return c.callJSON(ctx, EndpointCommit, request{Recipe: id, Size: int64(len(b))}, c.CommitTimeout, nil)
}

// header names the plan and target of a binary request.
func (c *Client) header() nats.Header {
	h := nats.Header{headerPlan: {c.plan}}
	if c.Name != "" {
		h.Set(headerTarget, c.Name)
	}
	return h
}

// Prune removes a backup at the target.
func (c *Client) Prune(ctx context.Context, name string) error {
	return c.callJSON(ctx, EndpointPrune, request{Name: name}, c.Timeout, nil)
}

var _ target.Target = (*Client)(nil)

func encodeChunks(chunks []target.Chunk) []byte {
	n := 0
	for _, c := range chunks {
		n += sha256.Size + 4 + len(c.Data)
	}
	b := make([]byte, 0, n)
	for _, c := range chunks {
		b = append(b, c.Hash[:]...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(c.Data)))
		b = append(b, c.Data...)
	}
	return b
}

func decodeChunks(b []byte) ([]target.Chunk, error) {
	var out []target.Chunk
	for len(b) > 0 {
		if len(b) < sha256.Size+4 {
			return nil, errors.New("a chunk frame is cut short")
		}
		var c target.Chunk
		copy(c.Hash[:], b)
		n := int(binary.BigEndian.Uint32(b[sha256.Size:]))
		b = b[sha256.Size+4:]
		if n > len(b) {
			return nil, fmt.Errorf("chunk %s says %d bytes, %d follow", c.Hash, n, len(b))
		}
		c.Data, b = b[:n], b[n:]
		out = append(out, c)
	}
	return out, nil
}

var (
	recipeEncoder, _ = zstd.NewWriter(nil)
	recipeDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(1<<30))
)

func encodeRecipe(r target.Recipe) ([]byte, error) {
	j, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return recipeEncoder.EncodeAll(j, nil), nil
}

func decodeRecipe(b []byte) (target.Recipe, error) {
	j, err := recipeDecoder.DecodeAll(b, nil)
	if err != nil {
		return target.Recipe{}, fmt.Errorf("recipe: %w", err)
	}
	var r target.Recipe
	d := json.NewDecoder(bytes.NewReader(j))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		return target.Recipe{}, fmt.Errorf("recipe: %w", err)
	}
	return r, r.Check()
}
