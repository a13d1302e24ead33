package jobs

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/dbusers/dbusers/wire"
)

// The job body decoder is hand-written (envelope.go). The upstream of
// encoding/json/v2, github.com/go-json-experiment/json, has a tokenizer,
// jsontext, that rejects duplicate names and needs no reflection: it was
// the candidate to replace it. BenchmarkBodyDecoder runs both on the same
// bodies, each doing the same work: one object, known names only, each
// once, each of its kind. docs/architecture.md has the figures.

// jsontextBody decodes body as decodeBody does, with jsontext; dec is
// reused from job to job (Reset), as a worker would keep one.
func jsontextBody(dec *jsontext.Decoder, rd *bytes.Reader, op wire.Op, body []byte) (Job, error) {
	j := Job{Op: op}
	rd.Reset(body)
	dec.Reset(rd) // duplicate names are an error by default
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return j, errors.New("body is not a JSON object")
	}
	allowed := opFields(op)
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return j, err
		}
		f := lookupField([]byte(name.String()))
		if f == 0 || allowed&f == 0 {
			return j, fmt.Errorf("field %q not allowed", name.String())
		}
		val, err := dec.ReadToken()
		if err != nil {
			return j, err
		}
		switch f {
		case fieldReadOnly:
			if k := val.Kind(); k != 't' && k != 'f' {
				return j, errors.New("read_only must be a boolean")
			}
			j.ReadOnly = val.Bool()
		case fieldLimit:
			if val.Kind() != '0' {
				return j, errors.New("limit must be a number")
			}
			j.Limit = int(val.Int())
		default:
			if val.Kind() != '"' {
				return j, errors.New("must be a string")
			}
			switch f {
			case fieldID:
				j.ID = val.String()
			case fieldUsername:
				j.Username = val.String()
			case fieldReplyKey:
				j.ReplyKey = val.String()
			case fieldAfter:
				j.After = val.String()
			}
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return j, err
	}
	if _, err := dec.ReadToken(); err == nil {
		return j, errors.New("data after the object")
	}
	return j, nil
}

func BenchmarkBodyDecoder(b *testing.B) {
	key := "XBOKPQ5HXDQAM5TZVUNHMHYZF6EDAWGUSWQNAN7PRSOE3QLMN2EZWFWG"
	bodies := []struct {
		name string
		op   wire.Op
		body []byte
	}{
		{"reset_generated", wire.OpResetPassword, fmt.Appendf(nil, `{"id":"job-01hzy3k8q4v7c2m9t5w6x0r1ab","username":"app_user_0042","reply_key":%q}`, key)},
		{"list_page", wire.OpList, []byte(`{"id":"job-01hzy3k8q4v7c2m9t5w6x0r1ab","after":"app_user_0042","limit":5000}`)},
	}
	for _, c := range bodies {
		// Both decode it the same way first, so the race is a fair one.
		j1 := Job{Op: c.op}
		if _, err := j1.decodeBody(c.body); err != nil {
			b.Fatal(err)
		}
		rd := bytes.NewReader(nil)
		dec := jsontext.NewDecoder(rd)
		if j2, err := jsontextBody(dec, rd, c.op, c.body); err != nil || j2.ID != j1.ID || j2.Username != j1.Username || j2.Limit != j1.Limit {
			b.Fatalf("jsontext: %+v %v, want %+v", j2, err, j1)
		}
		b.Run(c.name+"/hand-written", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				j := Job{Op: c.op}
				if _, err := j.decodeBody(c.body); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/jsontext", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := jsontextBody(dec, rd, c.op, c.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
