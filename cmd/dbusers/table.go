package main

import (
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dbusers/dbusers/client"
)

// writeAccounts prints accounts as the platform's bordered table:
//
//	+----------------+-----------+-----------+
//	|    USERNAME    | READ-ONLY | PROTECTED |
//	+----------------+-----------+-----------+
//	| my_app_4553    | false     | true      |
//	+----------------+-----------+-----------+
func writeAccounts(w io.Writer, accounts []client.Account) error {
	rows := make([][]string, len(accounts))
	for i, a := range accounts {
		rows[i] = []string{a.Username, strconv.FormatBool(a.ReadOnly), strconv.FormatBool(a.Protected)}
	}
	_, err := io.WriteString(w, renderTable([]string{"USERNAME", "READ-ONLY", "PROTECTED"}, rows))
	return err
}

// renderTable draws header and rows with +---+ borders: headers centered
// (an odd gap puts the extra space on the right), cells left-aligned, one
// space of padding on each side. A table without rows keeps its header.
func renderTable(header []string, rows [][]string) string {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, r := range rows {
		for i, cell := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	var b strings.Builder
	border := func() {
		for _, w := range widths {
			b.WriteString("+" + strings.Repeat("-", w+2))
		}
		b.WriteString("+\n")
	}
	line := func(cells []string, center bool) {
		for i, w := range widths {
			gap := w - utf8.RuneCountInString(cells[i])
			left := 0
			if center {
				left = gap / 2
			}
			b.WriteString("| " + strings.Repeat(" ", left) + cells[i] + strings.Repeat(" ", gap-left) + " ")
		}
		b.WriteString("|\n")
	}
	border()
	line(header, true)
	border()
	for _, r := range rows {
		line(r, false)
	}
	border()
	return b.String()
}
