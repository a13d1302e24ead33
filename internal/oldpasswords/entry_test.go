package oldpasswords

import (
	"testing"
	"time"

	"github.com/dbusers/dbusers/internal/jobs"
)

// TestDecodeUntil: the watcher's quick read of an entry's end agrees with
// the full decode on every value the worker writes, and falls back to it
// for any other shape.
func TestDecodeUntil(t *testing.T) {
	t.Parallel()
	until := time.Date(2030, 5, 6, 7, 8, 9, 10, time.UTC)
	written, err := encodeValue(jobs.OldPasswordEnd{Until: until, JobID: "job-42", Kept: "mysql_native_password c2VhbGVk"})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := encodeValue(jobs.OldPasswordEnd{Until: until.Truncate(time.Second), JobID: "job-1"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		data string
		want time.Time // zero: an error
	}{
		{"as the worker writes it", string(written), until},
		{"without a credential", string(plain), until.Truncate(time.Second)},
		{"fields in another order", `{"job_id":"j","until":"2030-05-06T07:08:09Z"}`, until.Truncate(time.Second)},
		{"spaces", `{ "until" : "2030-05-06T07:08:09Z" }`, until.Truncate(time.Second)},
		{"until alone", `{"until":"2030-05-06T07:08:09Z"}`, until.Truncate(time.Second)},
		{"not a time", `{"until":"soon","job_id":"j"}`, time.Time{}},
		{"no until", `{"job_id":"j"}`, time.Time{}},
		{"not JSON", `until=2030`, time.Time{}},
		{"cut short", `{"until":"2030-05-06T07:08:09Z"`, time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeUntil([]byte(tc.data))
			if tc.want.IsZero() {
				if err == nil {
					t.Fatalf("decodeUntil(%s) = %v, want an error", tc.data, got)
				}
				return
			}
			if err != nil || !got.Equal(tc.want) {
				t.Fatalf("decodeUntil(%s) = %v, %v; want %v", tc.data, got, err, tc.want)
			}
			if v, err := decodeValue([]byte(tc.data)); err != nil || !v.Until.Equal(got) {
				t.Fatalf("decodeValue says %v, %v", v.Until, err)
			}
		})
	}
}
