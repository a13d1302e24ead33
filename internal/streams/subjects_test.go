package streams

import "testing"

func TestReadByConsumer(t *testing.T) {
	t.Parallel()
	cases := []struct {
		stored string
		want   bool
	}{
		{"dbusers.jobs.3.shop.user.create", true}, // rewritten into partition 3
		{"dbusers.jobs.0.shop.user.list", true},
		{"dbusers.jobs.x", true},                 // the misc consumer's
		{"dbusers.jobs.*", true},                 // a literal "*" token still matches its filter
		{"dbusers.jobs.>", false},                // but ">" does not
		{"dbusers.jobs.8.shop.user.list", false}, // partition 8 of 8 does not exist
		{"dbusers.jobs.03.shop.user.list", false},
		{"dbusers.jobs.shop.user.*", false},
		{"dbusers.jobs.shop.>", false},
		{"dbusers.jobs.*.user.list", false},
		{"dbusers.jobs.-1.user.list", false},
		{"other.jobs.1.shop.user.list", false},
	}
	for _, tc := range cases {
		if got := ReadByConsumer("dbusers", tc.stored, 8); got != tc.want {
			t.Errorf("ReadByConsumer(%q) = %v, want %v", tc.stored, got, tc.want)
		}
	}
}

func TestOriginalSubjectKeepsWildcardSubjects(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"dbusers.jobs.3.shop.user.create": "dbusers.jobs.shop.user.create",
		"dbusers.jobs.3.user.*":           "dbusers.jobs.3.user.*", // stored as published
		"dbusers.jobs.shop.>":             "dbusers.jobs.shop.>",
		"dbusers.jobs.x":                  "dbusers.jobs.x",
	}
	for stored, want := range cases {
		if got := OriginalSubject("dbusers", stored); got != want {
			t.Errorf("OriginalSubject(%q) = %q, want %q", stored, got, want)
		}
	}
}
