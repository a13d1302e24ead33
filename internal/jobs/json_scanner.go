package jobs

// A job body is a flat JSON object of scalars. The scanner here checks and
// walks such an object in one cheap pass, without decoding values it does
// not need; anything else is left to encoding/json, which decides whether
// it is valid at all.

import "encoding/json"

// jsonKind names the JSON type of a raw value for a message.
func jsonKind(val []byte) string {
	switch val[0] {
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "a number"
}

// unquote returns the contents of a raw JSON string. Without escapes it is a
// subslice of raw (no allocation); with them encoding/json unescapes it.
func unquote(raw []byte) ([]byte, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, false
	}
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c == '\\' {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, false
			}
			return []byte(s), true
		}
	}
	return inner, true
}

// objectIter walks the members of a top-level JSON object without decoding
// the values. The input must have passed checkObject: the iterator relies on
// it for structure, yet checks bounds so that it can never panic.
type objectIter struct {
	b []byte
	i int
}

// newObjectIter starts an iterator after the object's '{'; ok is false when
// the value is not an object.
func newObjectIter(b []byte) (objectIter, bool) {
	it := objectIter{b: b}
	it.skipSpace()
	if it.i >= len(b) || b[it.i] != '{' {
		return it, false
	}
	it.i++
	return it, true
}

// next returns the next member's raw key (quoted) and raw value; ok is false
// at the end of the object.
func (it *objectIter) next() (key, val []byte, ok bool) {
	it.skipSpace()
	if it.i < len(it.b) && it.b[it.i] == ',' {
		it.i++
		it.skipSpace()
	}
	if it.i >= len(it.b) || it.b[it.i] != '"' {
		return nil, nil, false
	}
	key = it.value()
	it.skipSpace()
	if it.i >= len(it.b) || it.b[it.i] != ':' {
		return nil, nil, false
	}
	it.i++
	it.skipSpace()
	if it.i >= len(it.b) {
		return nil, nil, false
	}
	val = it.value()
	return key, val, len(val) > 0
}

func (it *objectIter) skipSpace() { it.i = skipSpaceAt(it.b, it.i) }

// value returns the raw value starting at it.i and moves past it.
func (it *objectIter) value() []byte {
	b, start := it.b, it.i
	switch b[it.i] {
	case '"':
		it.i = skipString(b, it.i)
	case '{', '[':
		depth := 0
		for it.i < len(b) {
			switch b[it.i] {
			case '"':
				it.i = skipString(b, it.i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			it.i++
			if depth == 0 {
				break
			}
		}
	default:
		for it.i < len(b) {
			switch b[it.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return b[start:it.i]
			}
			it.i++
		}
	}
	return b[start:it.i]
}

// skipString returns the index after the string that opens at b[i].
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// syntax is what checkObject found.
type syntax uint8

const (
	isObject  syntax = iota // one JSON object and nothing else but white space
	notObject               // valid JSON, but not an object
	notJSON
)

// checkObject validates body as JSON, as json.Valid would, and says whether it
// is an object. A job body is a flat object of scalars, which this checks in
// one cheap pass; json.Valid's per-byte state machine costs several times
// more. A nested value (never valid in a job) and anything that is not an
// object are left to json.Valid.
func checkObject(b []byte) syntax {
	i := skipSpaceAt(b, 0)
	if i >= len(b) || b[i] != '{' {
		if json.Valid(b) {
			return notObject
		}
		return notJSON
	}
	i = skipSpaceAt(b, i+1)
	if i < len(b) && b[i] == '}' {
		return endOfBody(b, i+1)
	}
	for {
		// member: string ws ':' ws value
		if i >= len(b) || b[i] != '"' {
			return notJSON
		}
		if i = scanString(b, i); i < 0 {
			return notJSON
		}
		i = skipSpaceAt(b, i)
		if i >= len(b) || b[i] != ':' {
			return notJSON
		}
		i = skipSpaceAt(b, i+1)
		if i >= len(b) {
			return notJSON
		}
		switch b[i] {
		case '{', '[':
			if json.Valid(b) {
				return isObject
			}
			return notJSON
		case '"':
			i = scanString(b, i)
		case 't':
			i = scanLiteral(b, i, "true")
		case 'f':
			i = scanLiteral(b, i, "false")
		case 'n':
			i = scanLiteral(b, i, "null")
		default:
			i = scanNumber(b, i)
		}
		if i < 0 {
			return notJSON
		}
		i = skipSpaceAt(b, i)
		if i >= len(b) {
			return notJSON
		}
		switch b[i] {
		case ',':
			i = skipSpaceAt(b, i+1)
		case '}':
			return endOfBody(b, i+1)
		default:
			return notJSON
		}
	}
}

// endOfBody accepts only white space after the object.
func endOfBody(b []byte, i int) syntax {
	if skipSpaceAt(b, i) != len(b) {
		return notJSON
	}
	return isObject
}

func skipSpaceAt(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString validates the JSON string that opens at b[i] and returns the
// index after it, or -1. Bytes of 0x80 and above pass, as in json.Valid;
// UTF-8 is checked separately.
func scanString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < 0x20:
			return -1
		case c == '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return -1
				}
				for _, h := range b[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return -1
					}
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

// scanLiteral checks that lit is at b[i] and returns the index after it, or
// -1. What follows is checked by the caller (a delimiter must come next).
func scanLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// scanNumber validates a JSON number at b[i]:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and returns the index after
// it, or -1.
func scanNumber(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = scanDigits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := scanDigits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := scanDigits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func scanDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}
