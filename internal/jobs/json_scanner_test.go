package jobs

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCheckObject(t *testing.T) {
	tests := []struct {
		body string
		want syntax
	}{
		{`{}`, isObject},
		{" \t\r\n{ } \n", isObject},
		{`{"a":"b"}`, isObject},
		{`{"a":"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00"}`, isObject},
		{`{"a":0,"b":-0,"c":1.5,"d":-12e+3,"e":1E-2,"f":10.25e7}`, isObject},
		{`{"a":true,"b":false,"c":null}`, isObject},
		{`{"a":{"b":[1,{"c":"}"}]},"d":[]}`, isObject},
		{`[]`, notObject},
		{`"x"`, notObject},
		{` 12 `, notObject},
		{`null`, notObject},
		{``, notJSON},
		{`   `, notJSON},
		{`{`, notJSON},
		{`{"a"}`, notJSON},
		{`{"a":}`, notJSON},
		{`{"a":1,}`, notJSON},
		{`{,"a":1}`, notJSON},
		{`{"a":1 "b":2}`, notJSON},
		{`{"a":1}}`, notJSON},
		{`{"a":1} x`, notJSON},
		{`{"a":1}{}`, notJSON},
		{`{a:1}`, notJSON},
		{`{'a':1}`, notJSON},
		{`{"a":01}`, notJSON},
		{`{"a":1.}`, notJSON},
		{`{"a":.5}`, notJSON},
		{`{"a":1e}`, notJSON},
		{`{"a":+1}`, notJSON},
		{`{"a":-}`, notJSON},
		{`{"a":NaN}`, notJSON},
		{`{"a":tru}`, notJSON},
		{`{"a":truex}`, notJSON},
		{`{"a":nul}`, notJSON},
		{`{"a":"\x41"}`, notJSON},
		{`{"a":"\u12"}`, notJSON},
		{`{"a":"\u12g4"}`, notJSON},
		{"{\"a\":\"tab\there\"}", notJSON},
		{`{"a":"unterminated}`, notJSON},
		{`{"a":"x\"}`, notJSON},
		{`{"a":[1,}`, notJSON},
		{"{\"a\":1}\x00", notJSON},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			if got := checkObject([]byte(tt.body)); got != tt.want {
				t.Fatalf("checkObject = %d, want %d", got, tt.want)
			}
		})
	}
}

// FuzzCheckObject holds checkObject to encoding/json's verdict.
func FuzzCheckObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1.5e3}`, `{"a":"\u00e9"}`, `{"a":[{}]}`, `[]`, `{"a":1,}`, `{"a":-0}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := notJSON
		if json.Valid(b) {
			want = notObject
			if trimmed := strings.TrimLeft(string(b), " \t\r\n"); trimmed[0] == '{' {
				want = isObject
			}
		}
		if got := checkObject(b); got != want {
			t.Fatalf("checkObject(%q) = %d, want %d", b, got, want)
		}
	})
}
