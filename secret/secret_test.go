package secret_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.yaml.in/yaml/v3"

	"github.com/dbusers/dbusers/secret"
)

const value = "Sup3r_s3cret_value_that_must_not_show"

type holder struct {
	Name     string
	Password secret.Secret
	Ptr      *secret.Secret
	List     []secret.Secret
}

// TestNeverShown renders a Secret every way the code base could by mistake
// and fails if the value appears in any of them.
func TestNeverShown(t *testing.T) {
	s := secret.New(value)
	h := holder{Name: "x", Password: s, Ptr: &s, List: []secret.Secret{s}}

	renderings := map[string]func() (string, error){
		"String":   func() (string, error) { return s.String(), nil },
		"GoString": func() (string, error) { return s.GoString(), nil },
		"Sprint":   func() (string, error) { return fmt.Sprint(s, h, &h), nil },
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
		renderings["Sprintf "+verb] = func() (string, error) { return fmt.Sprintf(verb+" "+verb+" "+verb, s, h, &h), nil }
	}
	renderings["Errorf %w"] = func() (string, error) {
		return fmt.Errorf("wrap: %w", fmt.Errorf("dsn %v", s)).Error(), nil
	}
	renderings["json"] = func() (string, error) {
		b, err := json.Marshal(h)
		return string(b), err
	}
	renderings["json map key"] = func() (string, error) {
		b, err := json.Marshal(map[secret.Secret]int{s: 1})
		return string(b), err
	}
	renderings["yaml"] = func() (string, error) {
		b, err := yaml.Marshal(h)
		return string(b), err
	}
	renderings["slog"] = func() (string, error) {
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "s", s, "h", h)
		return buf.String(), nil
	}
	renderings["zap"] = func() (string, error) {
		var buf bytes.Buffer
		core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zap.DebugLevel)
		log := zap.New(core)
		log.Info("m", zap.Any("s", s), zap.Stringer("st", s), zap.Reflect("h", h), zap.Any("hp", &h), zap.Any("list", h.List))
		log.Sugar().Infow("sugar", "s", s, "h", h)
		log.Sugar().Infof("format %v %+v", s, h)
		return buf.String(), log.Sync()
	}
	for name, render := range renderings {
		t.Run(name, func(t *testing.T) {
			out, err := render()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out, value) || strings.Contains(out, fmt.Sprintf("%x", value)) {
				t.Fatalf("value shown: %s", out)
			}
			if name != "Sprintf %T" && !strings.Contains(out, secret.Redacted) {
				t.Fatalf("no %s marker in %s", secret.Redacted, out)
			}
		})
	}
}

func TestRevealAndDecode(t *testing.T) {
	s := secret.New(value)
	if s.Reveal() != value || s.Len() != len(value) || s.IsZero() {
		t.Fatalf("Reveal/Len/IsZero wrong")
	}
	if !s.Equal(secret.New(value)) || s.Equal(secret.New("other")) {
		t.Fatal("Equal wrong")
	}
	var zero secret.Secret
	if !zero.IsZero() || zero.String() != "" {
		t.Fatalf("zero secret renders %q", zero.String())
	}

	var cfg struct {
		DSN secret.Secret `yaml:"dsn"`
	}
	if err := yaml.Unmarshal([]byte("dsn: \"u:"+value+"@tcp(h:3306)/\"\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.DSN.Reveal() != "u:"+value+"@tcp(h:3306)/" {
		t.Fatalf("yaml decode gave %d bytes", cfg.DSN.Len())
	}
}
