package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type natsT struct {
	URLs     []string      `yaml:"urls"`
	Replicas int           `yaml:"replicas"`
	Window   time.Duration `yaml:"dedupe_window"`
}

type testConfig struct {
	Host     string            `yaml:"host"`
	NATS     natsT             `yaml:"nats"`
	Services map[string]natsT  `yaml:"services"`
	Labels   map[string]string `yaml:"labels"`
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // substring; empty means success
		check   func(t *testing.T, c testConfig, f *File)
	}{
		{name: "empty file keeps defaults", yaml: "", check: func(t *testing.T, c testConfig, f *File) {
			if c.NATS.Replicas != 1 {
				t.Fatalf("replicas = %d, want the default 1", c.NATS.Replicas)
			}
		}},
		{name: "values", yaml: "host: h1\nnats:\n  urls: [nats://a, nats://b]\n  replicas: 3\n  dedupe_window: 2m\n", check: func(t *testing.T, c testConfig, f *File) {
			if c.Host != "h1" || len(c.NATS.URLs) != 2 || c.NATS.Replicas != 3 || c.NATS.Window != 2*time.Minute {
				t.Fatalf("decoded %+v", c)
			}
			err := f.Errorf("nats.replicas", "must be 1 or 3")
			if err.Error() != "lifeboat.yaml:4: nats.replicas: must be 1 or 3" {
				t.Fatalf("Errorf = %q", err)
			}
		}},
		{name: "unknown top-level key", yaml: "host: h1\nhots: h2\n", wantErr: "lifeboat.yaml:2: hots: unknown key (known keys here: host, labels, nats, services)"},
		{name: "unknown nested key", yaml: "nats:\n  replicas: 3\n  replica: 1\n", wantErr: "lifeboat.yaml:3: nats.replica: unknown key"},
		{name: "unknown key inside a map value", yaml: "services:\n  sync:\n    urlz: []\n", wantErr: "lifeboat.yaml:3: services.sync.urlz: unknown key"},
		{name: "wrong type", yaml: "nats:\n  replicas: three\n", wantErr: "lifeboat.yaml:2: nats.replicas: cannot unmarshal !!str `three` into int"},
		{name: "bad duration", yaml: "nats:\n  dedupe_window: 2 minutes\n", wantErr: `lifeboat.yaml:2: nats.dedupe_window: "2 minutes" is not a duration`},
		{name: "list where a mapping belongs", yaml: "nats: [a, b]\n", wantErr: "lifeboat.yaml:1: nats: want a mapping of keys, got a list"},
		{name: "scalar where a list belongs", yaml: "nats:\n  urls: nats://a\n", wantErr: `lifeboat.yaml:2: nats.urls: want a list, got "nats://a"`},
		{name: "broken yaml", yaml: "host: h1\n  nats: [\n", wantErr: "lifeboat.yaml:2:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig{NATS: natsT{Replicas: 1}}
			f, err := Parse("lifeboat.yaml", []byte(tt.yaml), &c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				var ce *Error
				if !errors.As(err, &ce) {
					t.Fatalf("error %T is not a *config.Error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c, f)
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("host: h1\nnats:\n  replicas: 3\n"))
	f.Add([]byte("services:\n  sync:\n    urls: [a]\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c testConfig
		_, _ = Parse("fuzz.yaml", data, &c) // must not panic
	})
}
