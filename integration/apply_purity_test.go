package integration

import (
	"cmp"
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/tools/go/callgraph"
	"golang.org/x/tools/go/callgraph/cha"
	"golang.org/x/tools/go/callgraph/vta"
	"golang.org/x/tools/go/packages"
	"golang.org/x/tools/go/ssa"
	"golang.org/x/tools/go/ssa/ssautil"

	"lifeboat.dev/events"
)

// TestApplyPurity enforces DESIGN §1 "Replicas must not diverge": a
// handler that applies an event (every function value given to
// service.On) takes time, randomness and configuration only from the event
// and the replicated state, never from the host's clock, random source,
// files, environment or network. It analyses the code statically: the
// services and the fixture in testdata/impure are loaded with go/packages
// and built in SSA form (generics instantiated), the call graph is
// computed by VTA seeded with CHA (CHA alone resolves every interface and
// func-valued call to every candidate in the program, far too many; VTA
// follows which values reach the call), and from each handler every
// reachable function is visited until a forbidden one (forbiddenCall) is
// met, short of the packages in applyPurityExclusions and, inside the
// standard library and third-party modules, of dynamic calls (isOwnCode).
// A failure lists, for each handler, each call of a forbidden function it
// reaches, with the shortest call path to it.
//
// The fixture subtest proves the analysis can fail: it must report exactly
// the fixture's impure handlers, with their paths, and pass its pure one.
func TestApplyPurity(t *testing.T) {
	a := analyseApply(t)
	for _, x := range applyPurityExclusions {
		t.Logf("taken as pure: %s (%s)", x.path, x.why)
	}

	t.Run("fixture", func(t *testing.T) {
		got := map[string][]string{}
		for _, h := range a.handlers {
			if h.pkg != applyFixturePkg {
				continue
			}
			got[h.label] = []string{}
			for _, v := range a.impurities(h) {
				got[h.label] = append(got[h.label], v.callee+": "+strings.Join(v.path, " → "))
			}
		}
		want := map[string][]string{
			"s.handleHostDown": {
				"time.Now: (*impure.Service).handleHostDown → impure.stamp → time.Now",
			},
			"handleHostUp": {
				"math/rand/v2.Int64: impure.handleHostUp → math/rand/v2.Int64",
			},
			"func literal": {
				"time.Now: (*impure.Service).Subscriptions$1 → time.Now",
			},
			"logged(s.handleFailoverStarted)": {
				"os.Getenv: impure.logged$1[events.FailoverStarted] → (*impure.Service).handleFailoverStarted → impure.zone → os.Getenv",
			},
			"s.handleFailoverCompleted": {},
		}
		for label, w := range want {
			g, ok := got[label]
			if !ok {
				t.Errorf("handler service.On(%s) not found in the fixture", label)
				continue
			}
			if !slices.Equal(g, w) {
				t.Errorf("handler service.On(%s):\n got %q\nwant %q", label, g, w)
			}
		}
		for label := range got {
			if _, ok := want[label]; !ok {
				t.Errorf("unexpected handler service.On(%s) in the fixture", label)
			}
		}
	})

	t.Run("services", func(t *testing.T) {
		n := 0
		for _, h := range a.handlers {
			if !strings.HasPrefix(h.pkg, "lifeboat.dev/services/") {
				continue
			}
			n++
			vs := a.impurities(h)
			if len(vs) == 0 {
				t.Logf("pure: service.On(%s) at %s", h.label, h.pos)
				continue
			}
			var b strings.Builder
			fmt.Fprintf(&b, "service.On(%s) at %s reaches what differs between hosts:", h.label, h.pos)
			for _, v := range vs {
				fmt.Fprintf(&b, "\n\t%s (%s), called at %s\n\t\t%s", v.callee, v.why, v.site, strings.Join(v.path, " → "))
			}
			t.Error(b.String())
		}
		if n == 0 {
			t.Fatal("no handler found in lifeboat.dev/services/...: is service.On still how services subscribe?")
		}
		t.Logf("%d handlers of the services analysed", n)
	})
}

const (
	applyServicePkg = "lifeboat.dev/pkg/service"
	applyFixtureDir = "./testdata/impure"
	applyFixturePkg = "lifeboat.dev/integration/testdata/impure"
)

// applyPurityExclusions are the packages the analysis does not descend
// into: what a handler calls there counts as pure. A path matches a
// package and the packages below it.
var applyPurityExclusions = []struct{ path, why string }{
	// The runtime's store is how a handler changes replicated state: what
	// it writes through tx is what every host applies. The inbox and
	// outbox it keeps beside are host-local bookkeeping, stamped by the
	// store's own clock (service.Deps.Now). Two of its entry points take
	// functions that are not apply paths, and stopping at the store is
	// what keeps them out: tx.AfterCommit(fn) runs fn after the commit,
	// outside the apply; tx.Enqueue(job) has the job run by its kind's
	// worker (service.Work), after the commit, on the owner host only.
	{"lifeboat.dev/pkg/store", "the runtime's store: replicated writes through tx; inbox, outbox and work queue are host-local, on the store's clock"},
	// Logging: a log line's timestamp and where it goes are not state.
	{"log", "logging: not state"},
	{"log/slog", "logging: not state"},
	// Telemetry observes the apply: span timestamps, random trace ids and
	// metric updates are not state.
	{"lifeboat.dev/pkg/telemetry", "telemetry: not state"},
	{"go.opentelemetry.io", "telemetry: not state"},
	{"github.com/prometheus", "telemetry: not state"},
	// The SQL a handler runs goes through tx (store.Tx implements the
	// sqlc DBTX interface) to the service's own database. database/sql is
	// that database's plumbing: its clock reads time the connection pool.
	// Stopping here also keeps out the reads other code makes through
	// *sql.DB (DB.R), which VTA cannot tell from tx at the shared sqlc
	// call sites. Opening another database (sql.Open) is still forbidden.
	{"database/sql", "the service's database, reached through tx: not state"},
}

// applyAnalysis is the program of the services and the fixture, its call
// graph, and the handlers found in it.
type applyAnalysis struct {
	fset     *token.FileSet
	root     string
	cg       *callgraph.Graph
	handlers []applyHandler
}

// applyHandler is one function value given to service.On.
type applyHandler struct {
	pkg   string // the package that registers it
	label string // service.On's argument as written ("func literal" for one)
	pos   string // of the service.On call, relative to the repository
	// roots are the functions the argument may be: the handler itself, or
	// the closure a wrapper returns around it.
	roots []*ssa.Function
}

// impurity is a forbidden function a handler reaches.
type impurity struct {
	callee string   // e.g. time.Now
	why    string   // which rule forbids it
	path   []string // handler → … → callee
	site   string   // where the callee is called
}

func analyseApply(t *testing.T) *applyAnalysis {
	t.Helper()
	start := time.Now()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	// Every package of the services and their dependencies, with syntax:
	// the analysis follows calls into the standard library and third-party
	// modules too (a uuid.New reaches crypto/rand, a filepath.Abs os.Getwd).
	// No test files: only what runs in production.
	cfg := &packages.Config{
		Mode: packages.NeedName | packages.NeedFiles | packages.NeedCompiledGoFiles | packages.NeedImports |
			packages.NeedDeps | packages.NeedTypes | packages.NeedTypesSizes | packages.NeedSyntax | packages.NeedTypesInfo,
		Dir: wd,
	}
	pkgs, err := packages.Load(cfg, "lifeboat.dev/services/...", applyFixtureDir)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	var errs []string
	packages.Visit(pkgs, nil, func(p *packages.Package) {
		for _, e := range p.Errors {
			errs = append(errs, fmt.Sprintf("%s: %v", p.PkgPath, e))
		}
	})
	if len(errs) > 0 {
		t.Fatalf("the packages do not load, so their handlers cannot be checked:\n%s", strings.Join(errs, "\n"))
	}
	loaded := time.Since(start)

	prog, _ := ssautil.AllPackages(pkgs, ssa.InstantiateGenerics)
	prog.Build()
	funcs := ssautil.AllFunctions(prog)
	a := &applyAnalysis{fset: prog.Fset, root: filepath.Dir(wd), cg: vta.CallGraph(funcs, cha.CallGraph(prog))}

	// The calls of service.On, by position, as written.
	calls := map[token.Pos]*ast.CallExpr{}
	for _, p := range pkgs {
		for _, f := range p.Syntax {
			ast.Inspect(f, func(n ast.Node) bool {
				if c, ok := n.(*ast.CallExpr); ok && len(c.Args) == 1 {
					calls[c.Lparen] = c
				}
				return true
			})
		}
	}
	for fn := range funcs {
		if fn.Pkg == nil || fn.Pkg.Prog != prog || !applyInScope(fn.Pkg.Pkg.Path()) {
			continue
		}
		if fn.TypeParams().Len() > 0 && len(fn.TypeArgs()) == 0 {
			continue // a generic body; its instances are analysed instead
		}
		for _, b := range fn.Blocks {
			for _, ins := range b.Instrs {
				call, ok := ins.(*ssa.Call)
				if !ok {
					continue
				}
				on := call.Call.StaticCallee()
				if on == nil || on.Origin() == nil || on.Origin().Pkg == nil ||
					on.Origin().Pkg.Pkg.Path() != applyServicePkg || on.Origin().Name() != "On" {
					continue
				}
				if commandHandler(on) {
					// A command is consumed once, on one host (its
					// addressee, or the leader), and is not applied by
					// every host: what it must make known travels as the
					// events it emits, whose handlers are checked.
					continue
				}
				h := applyHandler{pkg: fn.Pkg.Pkg.Path(), label: "?", pos: a.position(call.Pos())}
				if c := calls[call.Pos()]; c != nil {
					if _, lit := c.Args[0].(*ast.FuncLit); lit {
						h.label = "func literal"
					} else {
						h.label = types.ExprString(c.Args[0])
					}
				}
				h.roots = funcValues(call.Call.Args[0], 0)
				if h.roots == nil {
					// A value the walk cannot trace (a parameter, a field):
					// what service.On's closure may call, as VTA has it.
					h.roots = a.onCallees(on)
				}
				a.handlers = append(a.handlers, h)
			}
		}
	}
	slices.SortFunc(a.handlers, func(x, y applyHandler) int { return cmp.Compare(x.pos, y.pos) })
	t.Logf("loaded in %v, analysed in %v: %d functions, %d handlers",
		loaded.Round(time.Millisecond), (time.Since(start) - loaded).Round(time.Millisecond), len(funcs), len(a.handlers))
	return a
}

// commandHandler says whether on, an instance of service.On, subscribes to
// a command of the events catalog.
func commandHandler(on *ssa.Function) bool {
	args := on.TypeArgs()
	if len(args) == 0 {
		return false
	}
	named, ok := types.Unalias(args[0]).(*types.Named)
	if !ok || named.Obj().Pkg() == nil || named.Obj().Pkg().Path() != "lifeboat.dev/events" {
		return false
	}
	for _, t := range events.Catalog() {
		if t.Kind == events.Command && t.Name == named.Obj().Name() {
			return true
		}
	}
	return false
}

// applyInScope says whether handlers registered in pkg are checked.
func applyInScope(pkg string) bool {
	return pkg == applyFixturePkg || strings.HasPrefix(pkg, "lifeboat.dev/services/")
}

// funcValues is the functions v may be, traced back through conversions,
// phis and the results of the wrappers it was returned from; nil when it
// cannot tell.
func funcValues(v ssa.Value, depth int) []*ssa.Function {
	switch v := v.(type) {
	case *ssa.Function:
		return []*ssa.Function{v}
	case *ssa.MakeClosure:
		return []*ssa.Function{v.Fn.(*ssa.Function)}
	case *ssa.ChangeType:
		return funcValues(v.X, depth)
	case *ssa.Phi:
		var out []*ssa.Function
		for _, e := range v.Edges {
			fs := funcValues(e, depth)
			if fs == nil {
				return nil
			}
			out = append(out, fs...)
		}
		return out
	case *ssa.Call:
		callee := v.Call.StaticCallee()
		if callee == nil || depth > 4 {
			return nil
		}
		var out []*ssa.Function
		for _, b := range callee.Blocks {
			if r, ok := b.Instrs[len(b.Instrs)-1].(*ssa.Return); ok && len(r.Results) == 1 {
				fs := funcValues(r.Results[0], depth+1)
				if fs == nil {
					return nil
				}
				out = append(out, fs...)
			}
		}
		return out
	}
	return nil
}

// onCallees is what the closure of service.On instance on may call.
func (a *applyAnalysis) onCallees(on *ssa.Function) []*ssa.Function {
	var out []*ssa.Function
	for _, anon := range on.AnonFuncs {
		if n := a.cg.Nodes[anon]; n != nil {
			for _, e := range n.Out {
				if e.Site.Common().StaticCallee() == nil && !e.Site.Common().IsInvoke() {
					out = append(out, e.Callee.Func)
				}
			}
		}
	}
	return out
}

// impurities walks the call graph from h breadth first, in a fixed order,
// and returns each call of a forbidden function it reaches, with the
// shortest path to it.
func (a *applyAnalysis) impurities(h applyHandler) []impurity {
	type step struct {
		fn   *ssa.Function
		prev *step
	}
	var out []impurity
	found := map[string]bool{}
	seen := map[*ssa.Function]bool{}
	var queue []*step
	roots := slices.Clone(h.roots)
	slices.SortFunc(roots, func(x, y *ssa.Function) int { return cmp.Compare(x.String(), y.String()) })
	for _, r := range roots {
		if !seen[r] {
			seen[r] = true
			queue = append(queue, &step{fn: r})
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		node := a.cg.Nodes[s.fn]
		if node == nil {
			continue
		}
		edges := slices.Clone(node.Out)
		slices.SortFunc(edges, func(x, y *callgraph.Edge) int {
			px, py := a.fset.Position(x.Site.Pos()), a.fset.Position(y.Site.Pos())
			return cmp.Or(cmp.Compare(px.Filename, py.Filename), cmp.Compare(px.Line, py.Line),
				cmp.Compare(px.Column, py.Column), cmp.Compare(x.Callee.Func.String(), y.Callee.Func.String()))
		})
		own := isOwnCode(s.fn)
		for _, e := range edges {
			if !own && e.Site.Common().StaticCallee() == nil {
				continue // a dynamic call inside a library: see isOwnCode
			}
			c := e.Callee.Func
			if e.Site.Common().StaticCallee() == nil && isErrorMethod(c) {
				// err.Error() through the error interface: VTA resolves a
				// wrapped error field to every error type of the process
				// (TLS, exec), but making an error's message has no effect.
				continue
			}
			name, why, leaf := classify(c)
			if why != "" {
				site := a.position(e.Site.Pos())
				if !found[name+" "+site] {
					found[name+" "+site] = true
					var path []string
					for p := s; p != nil; p = p.prev {
						if !isWrapper(p.fn) {
							path = append(path, shortName(p.fn))
						}
					}
					slices.Reverse(path)
					out = append(out, impurity{callee: name, why: why, path: append(path, name), site: site})
				}
				continue
			}
			if leaf {
				continue
			}
			if own && !isOwnCode(c) {
				// The functions our code hands a library are taken as
				// called by it (sort.Slice's less, sync.Once.Do's f).
				via := &step{fn: c, prev: s}
				for _, arg := range e.Site.Common().Args {
					for _, fv := range funcValues(arg, 0) {
						if !seen[fv] {
							seen[fv] = true
							queue = append(queue, &step{fn: fv, prev: via})
						}
					}
				}
			}
			if !seen[c] {
				seen[c] = true
				queue = append(queue, &step{fn: c, prev: s})
			}
		}
	}
	return out
}

// isErrorMethod says whether fn is an Error() string method.
func isErrorMethod(fn *ssa.Function) bool {
	sig := fn.Signature
	return fn.Name() == "Error" && sig.Recv() != nil && sig.Params().Len() == 0 && sig.Results().Len() == 1 &&
		types.Identical(sig.Results().At(0).Type(), types.Typ[types.String])
}

// isOwnCode says whether fn is lifeboat's (or the fixture's), where every
// call VTA resolves is followed. In the standard library and third-party
// modules only static calls are: their dynamic calls (an io.Writer's
// Write, the func given to a sync.Once, a driver.Conn) are resolved by
// VTA field by field over the whole process, not per caller, so from any
// handler they would reach every writer, once-function and connection of
// the process (a TLS handshake, a gRPC dial). What a library calls back
// from our code is still followed: see impurities.
func isOwnCode(fn *ssa.Function) bool {
	for f := fn; f != nil; f = f.Parent() {
		if f.Pkg != nil {
			return strings.HasPrefix(f.Pkg.Pkg.Path(), "lifeboat.dev/")
		}
		if o := f.Object(); o != nil && o.Pkg() != nil {
			return strings.HasPrefix(o.Pkg().Path(), "lifeboat.dev/")
		}
	}
	return false
}

func (a *applyAnalysis) position(pos token.Pos) string {
	p := a.fset.Position(pos)
	if !p.IsValid() {
		return "-"
	}
	if rel, err := filepath.Rel(a.root, p.Filename); err == nil {
		p.Filename = filepath.ToSlash(rel)
	}
	return fmt.Sprintf("%s:%d", p.Filename, p.Line)
}

// classify says whether fn is forbidden (its name and why), or, if not,
// whether the walk stops at it (an exclusion, or a pure function of a
// forbidden package).
func classify(fn *ssa.Function) (name, why string, leaf bool) {
	obj, _ := fn.Object().(*types.Func)
	if o := fn.Origin(); o != nil {
		obj, _ = o.Object().(*types.Func)
	}
	if obj == nil || obj.Pkg() == nil {
		// An anonymous function, or a synthetic one of no package: its
		// enclosing package decides.
		if fn.Parent() != nil {
			_, _, leaf = classify(fn.Parent())
			return "", "", leaf
		}
		if fn.Pkg != nil {
			return "", "", excluded(fn.Pkg.Pkg.Path())
		}
		return "", "", false
	}
	pkg, recv := obj.Pkg().Path(), ""
	if r := obj.Signature().Recv(); r != nil {
		t := r.Type()
		if p, ok := t.(*types.Pointer); ok {
			t = p.Elem()
		}
		if n, ok := t.(*types.Named); ok {
			recv = n.Obj().Name()
		}
	}
	why = forbiddenCall(pkg, recv, obj.Name())
	if why != "" {
		return obj.FullName(), why, true
	}
	return "", "", excluded(pkg) || pkg == "net"
}

func excluded(pkg string) bool {
	for _, x := range applyPurityExclusions {
		if pkg == x.path || strings.HasPrefix(pkg, x.path+"/") {
			return true
		}
	}
	return false
}

// forbiddenCall says why the function or method (of the named type recv)
// name of package pkg is forbidden on an apply path, or "" when it is not.
func forbiddenCall(pkg, recv, name string) string {
	switch pkg {
	case "time":
		switch name {
		case "Now", "Since", "Until", "After", "AfterFunc", "NewTimer", "NewTicker", "Tick", "Sleep":
			if recv == "" {
				return "the host's clock"
			}
		}
	case "math/rand", "math/rand/v2", "crypto/rand":
		return "randomness"
	case "os":
		switch recv {
		case "File", "Root":
			return "the file system"
		case "Process":
			return "the host's processes"
		case "":
			switch name {
			case "Getenv", "LookupEnv", "Environ", "ExpandEnv", "Setenv", "Unsetenv", "Clearenv":
				return "the environment"
			case "Hostname", "Getpid", "Getppid", "Executable", "StartProcess", "FindProcess":
				return "the host"
			case "Open", "OpenFile", "OpenRoot", "OpenInRoot", "ReadFile", "WriteFile", "Create", "CreateTemp",
				"MkdirTemp", "Stat", "Lstat", "ReadDir", "Remove", "RemoveAll", "Rename", "Mkdir", "MkdirAll",
				"Getwd", "Chdir", "Chmod", "Chown", "Lchown", "Chtimes", "Truncate", "Link", "Symlink", "Readlink",
				"DirFS", "CopyFS", "TempDir", "UserHomeDir", "UserCacheDir", "UserConfigDir":
				return "the file system"
			}
		}
	case "io/fs":
		if recv == "" && (name == "WalkDir" || name == "Glob") {
			return "the file system"
		}
	case "path/filepath":
		switch name {
		case "Walk", "WalkDir", "Glob", "Abs", "EvalSymlinks":
			return "the file system"
		}
	case "database/sql":
		if recv == "" && (name == "Open" || name == "OpenDB") {
			return "a database outside the store"
		}
	case "os/exec":
		return "the host's programs"
	case "net":
		// Parsing and printing addresses is pure; the rest dials, listens
		// or resolves.
		switch recv {
		case "IP", "IPMask", "IPNet", "HardwareAddr":
			return ""
		case "":
			switch name {
			case "ParseIP", "ParseCIDR", "IPv4", "IPv4Mask", "CIDRMask", "JoinHostPort", "SplitHostPort", "ParseMAC":
				return ""
			}
		default:
			switch name {
			case "Error", "Timeout", "Temporary", "Unwrap", "String", "Network":
				return ""
			}
		}
		return "the network"
	case "net/http", "net/rpc", "net/smtp":
		return "the network"
	}
	return ""
}

// isWrapper says whether fn is a synthetic wrapper (a bound method value,
// a promoted method), left out of the paths shown.
func isWrapper(fn *ssa.Function) bool {
	return strings.Contains(fn.Synthetic, "wrapper") || strings.Contains(fn.Synthetic, "thunk")
}

// shortName names fn with package names instead of paths, e.g.
// (*backupscheduler.Service).now, impure.logged$1[events.FailoverStarted].
func shortName(fn *ssa.Function) string {
	qual := func(p *types.Package) string { return p.Name() }
	var targs string
	for f := fn; f != nil && targs == ""; f = f.Parent() {
		var s []string
		for _, t := range f.TypeArgs() {
			s = append(s, types.TypeString(t, qual))
		}
		if len(s) > 0 {
			targs = "[" + strings.Join(s, ", ") + "]"
		}
	}
	return baseName(fn, qual) + targs
}

// baseName is shortName without type arguments.
func baseName(fn *ssa.Function, qual types.Qualifier) string {
	name := stripTypeArgs(fn.Name())
	if p := fn.Parent(); p != nil {
		return baseName(p, qual) + strings.TrimPrefix(name, stripTypeArgs(p.Name()))
	}
	if r := fn.Signature.Recv(); r != nil {
		t := r.Type()
		if o := fn.Origin(); o != nil {
			t = o.Signature.Recv().Type()
		}
		return "(" + types.TypeString(t, qual) + ")." + name
	}
	if fn.Pkg != nil {
		return fn.Pkg.Pkg.Name() + "." + name
	}
	if o := fn.Object(); o != nil && o.Pkg() != nil {
		return o.Pkg().Name() + "." + name
	}
	return name
}

// stripTypeArgs removes the bracketed type arguments from an SSA name:
// logged[lifeboat.dev/events.HostDown]$1 is logged$1.
func stripTypeArgs(name string) string {
	var b strings.Builder
	depth := 0
	for _, r := range name {
		switch {
		case r == '[':
			depth++
		case r == ']':
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}
