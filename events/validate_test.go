package events

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func mustType(t testing.TB, name string) Type {
	t.Helper()
	for _, typ := range Catalog() {
		if typ.Name == name {
			return typ
		}
	}
	t.Fatalf("no catalog type %s", name)
	return Type{}
}

func TestSamplesCoverCatalog(t *testing.T) {
	s := samples()
	for _, typ := range Catalog() {
		if _, ok := s[typ.Name]; !ok {
			t.Errorf("samples() has no %s: add a populated one", typ.Name)
		}
	}
	if len(s) != len(Catalog()) {
		t.Errorf("samples() has %d entries, the catalog %d", len(s), len(Catalog()))
	}
}

// Every populated sample validates against its checked-in schema and
// decodes back to the same value.
func TestSamplesValidateAndRoundTrip(t *testing.T) {
	for name, v := range samples() {
		t.Run(name, func(t *testing.T) {
			typ, ok := TypeOf(v)
			if !ok {
				t.Fatalf("TypeOf(%T) not found", v)
			}
			body, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(typ, body)
			if err != nil {
				t.Fatalf("Decode(%s): %v", body, err)
			}
			again, _ := json.Marshal(got)
			if string(again) != string(body) {
				t.Errorf("round trip changed the body:\n got %s\nwant %s", again, body)
			}
		})
	}
}

// What an operator sees for each kind of bad body, and what passes.
func TestValidate(t *testing.T) {
	tests := []struct {
		name, typ, body string
		want            error  // nil, ErrNotJSON or ErrSchema
		msg             string // the whole error message, when it matters
	}{
		{"outside publisher's bare host down", "HostDown", `{"host":"h1"}`, nil, ""},
		{"full host down", "HostDown", `{"host":"h1","last_seen":"2024-05-01T10:00:00Z","reason":"power","detected_by":"pagerduty"}`, nil, ""},
		{"extra fields accepted", "HostDown", `{"host":"h1","rack":"r7","labels":{"dc":"ams"},"added_in":"v2"}`, nil, ""},
		{"extra fields in nested objects accepted", "BackupPruned", `{"plan":"p","pruned":[{"backup":"b","reason":"r","freed":123}]}`, nil, ""},
		{"missing required field", "HostDown", `{"reason":"power"}`, ErrSchema, "HostDown: /host: missing required property"},
		{"several missing", "DNSSet", `{}`, ErrSchema, "DNSSet: /address: missing required property; /name: missing required property"},
		{"missing in a nested object", "BackupPruned", `{"plan":"p","pruned":[{"backup":"b"}]}`, ErrSchema, "BackupPruned: /pruned/0/reason: missing required property"},
		{"wrong type", "HostDown", `{"host":42}`, ErrSchema, "HostDown: /host: got number, want string"},
		{"null field", "HostDown", `{"host":null}`, ErrSchema, "HostDown: /host: got null, want string"},
		{"empty host", "HostDown", `{"host":""}`, ErrSchema, ""},
		{"not an object", "HostDown", `["h1"]`, ErrSchema, "HostDown: (root): got array, want object"},
		{"JSON null", "HostDown", `null`, ErrSchema, "HostDown: (root): got null, want object"},
		{"bad time", "HostDown", `{"host":"h1","last_seen":"yesterday"}`, ErrSchema, ""},
		{"time without zone", "HostDown", `{"host":"h1","last_seen":"2024-05-01T10:00:00"}`, ErrSchema, ""},
		{"integer as string", "JobExited", `{"job":"j","host":"h","exit_code":"0"}`, ErrSchema, "JobExited: /exit_code: got string, want integer"},
		{"fractional integer", "JobExited", `{"job":"j","host":"h","exit_code":1.5}`, ErrSchema, ""},
		{"exit code zero is present", "JobExited", `{"job":"j","host":"h","exit_code":0}`, nil, ""},
		{"negative size", "VolumeOverflow", `{"volume":"v","host":"h","used":-1,"capacity":10}`, ErrSchema, ""},
		{"unknown backup kind", "BackupTake", `{"plan":"wr","kind":"weekly"}`, ErrSchema, ""},
		{"scheduled is not a take kind", "BackupTake", `{"plan":"wr","kind":"scheduled"}`, ErrSchema, ""},
		{"take without kind", "BackupTake", `{"plan":"wr"}`, nil, ""},
		{"bad sha256", "BackupTaken", `{"plan":"p","instance":"i","backup":"b","kind":"manual","sha256":"abc","taken_at":"2024-05-01T10:00:00Z","consistent_at":"2024-05-01T10:00:00Z"}`, ErrSchema, ""},
		{"epoch zero", "InstanceActivated", `{"instance":"i","to":"h","address":"10.0.0.2","epoch":0}`, ErrSchema, ""},
		{"hand-published activation", "InstanceActivated", `{"instance":"i","to":"h","address":"10.0.0.2","epoch":3}`, nil, ""},
		{"confirm-dead a job", "JobTrackerConfirmDead", `{"job":"j1"}`, nil, ""},
		{"confirm-dead a host", "JobTrackerConfirmDead", `{"host":"h1"}`, nil, ""},
		{"confirm-dead nothing", "JobTrackerConfirmDead", `{}`, ErrSchema, "JobTrackerConfirmDead: (root): needs one of the properties job, host"},
		{"confirm-dead both", "JobTrackerConfirmDead", `{"job":"j1","host":"h1"}`, ErrSchema, "JobTrackerConfirmDead: (root): give only one of the properties job, host"},
		{"kick everything", "SyncKick", `{}`, nil, ""},
		{"not JSON", "HostDown", `not json`, ErrNotJSON, "not JSON: invalid character 'o' in literal null (expecting 'u')"},
		{"truncated", "HostDown", `{"host":"h1"`, ErrNotJSON, "not JSON: unexpected end of JSON input"},
		{"trailing garbage", "HostDown", `{"host":"h1"} x`, ErrNotJSON, "not JSON: invalid character 'x' after top-level value"},
		{"empty body", "HostDown", ``, ErrNotJSON, "not JSON: empty body, want a JSON object"},
		{"blank body", "HostDown", " \n", ErrNotJSON, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(mustType(t, tc.typ), []byte(tc.body))
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("Validate(%s, %s) = %v, want ok", tc.typ, tc.body, err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("Validate(%s, %s) = %v, want %v", tc.typ, tc.body, err, tc.want)
			case tc.want == ErrSchema && errors.Is(err, ErrNotJSON), tc.want == ErrNotJSON && errors.Is(err, ErrSchema):
				t.Fatalf("Validate(%s, %s) = %v is both not JSON and a schema error", tc.typ, tc.body, err)
			case tc.msg != "" && err.Error() != tc.msg:
				t.Fatalf("Validate(%s, %s) says\n %q\nwant\n %q", tc.typ, tc.body, err, tc.msg)
			}
			if tc.want == ErrSchema {
				var se *SchemaError
				if !errors.As(err, &se) || se.Type != tc.typ || len(se.Problems) == 0 {
					t.Fatalf("Validate(%s, %s) = %#v, want a *SchemaError for %s", tc.typ, tc.body, err, tc.typ)
				}
			}
		})
	}
}

func TestValidateBoundsItsMessage(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"plan":"p","pruned":[`)
	for i := range 50 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{}`)
	}
	b.WriteString(`]}`)
	err := Validate(mustType(t, "BackupPruned"), []byte(b.String()))
	var se *SchemaError
	if !errors.As(err, &se) {
		t.Fatalf("Validate = %v, want a schema error", err)
	}
	if len(se.Problems) != maxProblems+1 || se.Problems[maxProblems] != "and 90 more" {
		t.Errorf("problems = %d, last %q; want %d and \"and 90 more\"", len(se.Problems), se.Problems[len(se.Problems)-1], maxProblems+1)
	}
}

func TestValidateRefusesATypeNotFromTheCatalog(t *testing.T) {
	if err := Validate(Type{Name: "Nope"}, []byte(`{}`)); err == nil || errors.Is(err, ErrSchema) || errors.Is(err, ErrNotJSON) {
		t.Errorf("Validate(Type{}) = %v, want a plain error", err)
	}
}

func TestDecode(t *testing.T) {
	typ, _ := BySubject("lifeboat.event.host.down")
	v, err := Decode(typ, []byte(`{"host":"h1","last_seen":"2024-05-01T10:00:00+02:00","future_field":[1,2]}`))
	if err != nil {
		t.Fatal(err)
	}
	hd, ok := v.(*HostDown)
	if !ok {
		t.Fatalf("Decode made a %T, want *HostDown", v)
	}
	if hd.Host != "h1" || hd.LastSeen.UTC().Hour() != 8 {
		t.Errorf("decoded %+v", hd)
	}
	if _, err := Decode(typ, []byte(`{"reason":"x"}`)); !errors.Is(err, ErrSchema) {
		t.Errorf("Decode of an invalid body = %v, want ErrSchema", err)
	}
}

// encoding/json would let "Host" overwrite the validated "host"; Decode
// must hand the handler what the schema checked.
func TestDecodeIgnoresKeysThatDifferOnlyInCase(t *testing.T) {
	tests := []struct{ typ, body string }{
		{"HostDown", `{"host":"h1","Host":""}`},
		{"HostDown", `{"HOST":42,"host":"h1"}`},
		{"BackupPruned", `{"plan":"p","pruned":[{"backup":"h1","reason":"r","BACKUP":""}]}`},
	}
	for _, tc := range tests {
		v, err := Decode(mustType(t, tc.typ), []byte(tc.body))
		if err != nil {
			t.Fatalf("Decode(%s) = %v", tc.body, err)
		}
		switch v := v.(type) {
		case *HostDown:
			if v.Host != "h1" {
				t.Errorf("Decode(%s).Host = %q, want h1", tc.body, v.Host)
			}
		case *BackupPruned:
			if v.Pruned[0].Backup != "h1" {
				t.Errorf("Decode(%s).Pruned[0].Backup = %q, want h1", tc.body, v.Pruned[0].Backup)
			}
		}
	}
}

func TestDecodeRefusesWhatTheGoTypeCannotHold(t *testing.T) {
	for _, body := range []string{
		`{"job":"j","host":"h","exit_code":1e400}`,
		`{"job":"j","host":"h","exit_code":99999999999999999999999}`,
		`{"job":"j","host":"h","exit_code":2.0}`,
	} {
		_, err := Decode(mustType(t, "JobExited"), []byte(body))
		if !errors.Is(err, ErrSchema) {
			t.Errorf("Decode(%s) = %v, want ErrSchema", body, err)
		}
	}
}

// Zero values of types with required properties never pass: a producer
// that forgets a field is refused before anything is sent.
func TestZeroValuesOfTypesWithRequiredFieldsFail(t *testing.T) {
	for _, typ := range Catalog() {
		body, err := json.Marshal(typ.New())
		if err != nil {
			t.Fatal(err)
		}
		err = Validate(typ, body)
		mayBeEmpty := typ.Name == "SyncKick"
		if mayBeEmpty && err != nil {
			t.Errorf("%s zero value %s: %v", typ.Name, body, err)
		}
		if !mayBeEmpty && !errors.Is(err, ErrSchema) {
			t.Errorf("%s zero value %s validated (err %v); it has required fields", typ.Name, body, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	cat := Catalog()
	index := map[string]int{}
	for i, typ := range cat {
		index[typ.Name] = i
	}
	for name, v := range samples() {
		body, _ := json.Marshal(v)
		f.Add(uint8(index[name]), body)
	}
	for _, s := range []string{`{"host":"h1"}`, `not json`, `{"host":"h1","Host":""}`, `[]`, `null`, `{"exit_code":1e400}`,
		`{"host":"h1","last_seen":"1985-04-12T23:20:50.52Z"}`, `{"job":"j1","host":"h1"}`, `{"pruned":[{}]}`} {
		f.Add(uint8(1), []byte(s))
	}
	f.Fuzz(func(t *testing.T, i uint8, body []byte) {
		typ := cat[int(i)%len(cat)]
		v, err := Decode(typ, body)
		if err != nil {
			if !errors.Is(err, ErrNotJSON) && !errors.Is(err, ErrSchema) {
				t.Fatalf("Decode(%s, %q) = %v: neither ErrNotJSON nor ErrSchema", typ.Name, body, err)
			}
			if v != nil {
				t.Fatalf("Decode(%s, %q) returned a value with error %v", typ.Name, body, err)
			}
			return
		}
		if reflect.TypeOf(v) != reflect.TypeOf(typ.New()) {
			t.Fatalf("Decode(%s) made a %T", typ.Name, v)
		}
		// What Decode accepts, a producer can send on: the decoded value
		// re-encodes to a body that validates.
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("re-encoding %s decoded from %q: %v", typ.Name, body, err)
		}
		if err := Validate(typ, again); err != nil {
			t.Fatalf("Decode(%s) accepted %q but its re-encoding %s fails: %v", typ.Name, body, again, err)
		}
	})
}

func BenchmarkDecodeHostDown(b *testing.B) {
	typ := mustType(b, "HostDown")
	body := []byte(`{"host":"hot-1","last_seen":"2024-05-01T10:00:00Z","reason":"no heartbeat for 15s","detected_by":"volume-monitor@cold-1"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(typ, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBackupTaken(b *testing.B) {
	typ := mustType(b, "BackupTaken")
	body, _ := json.Marshal(samples()["BackupTaken"])
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(typ, body); err != nil {
			b.Fatal(err)
		}
	}
}
