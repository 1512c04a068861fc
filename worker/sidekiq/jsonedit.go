package sidekiq

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// field is one top-level member to set in a job payload; val is encoded JSON.
type field struct {
	key string
	val []byte
}

type span struct{ start, end int }

// member is one top-level member of a JSON object: where its key starts and where its
// value ends (the bytes a removal takes out, with one separating comma).
type member struct {
	key             string
	keyStart, start int // start: the value's first byte
	end             int // one past the value's last byte
}

// setFields returns raw with the given top-level members set: an existing member keeps
// its place and only its value bytes change, a new one is appended before the closing
// brace. Everything else stays byte for byte as it was, which is what Sidekiq itself does
// when it adds error fields or a new enqueued_at to a job (Ruby hashes keep insertion
// order), and what keeps nested values such as ActiveJob's serialized job untouched.
func setFields(raw []byte, fields ...field) ([]byte, error) {
	spans, _, closing, err := scanObject(raw)
	if err != nil {
		return nil, err
	}
	type repl struct {
		span
		val []byte
	}
	var repls []repl
	var appends []field
	for _, f := range fields {
		found := false
		for _, s := range spans[f.key] {
			repls = append(repls, repl{s, f.val})
			found = true
		}
		if !found {
			appends = append(appends, f)
		}
	}
	// Apply replacements in input order.
	for i := 1; i < len(repls); i++ {
		for k := i; k > 0 && repls[k].start < repls[k-1].start; k-- {
			repls[k], repls[k-1] = repls[k-1], repls[k]
		}
	}
	out := make([]byte, 0, len(raw)+64*len(fields))
	pos := 0
	for _, r := range repls {
		out = append(out, raw[pos:r.start]...)
		out = append(out, r.val...)
		pos = r.end
	}
	out = append(out, raw[pos:closing]...)
	empty := len(spans) == 0
	for _, f := range appends {
		if !empty {
			out = append(out, ',')
		}
		empty = false
		key, _ := marshalNoEscape(f.key)
		out = append(out, key...)
		out = append(out, ':')
		out = append(out, f.val...)
	}
	out = append(out, raw[closing:]...)
	return out, nil
}

// removeFields returns raw without the given top-level members (every occurrence), the
// rest byte for byte as it was: what Ruby's Hash#delete does before the job is dumped
// again. Keys that are not there are ignored.
func removeFields(raw []byte, keys ...string) ([]byte, error) {
	_, members, _, err := scanObject(raw)
	if err != nil {
		return nil, err
	}
	drop := func(k string) bool {
		for _, d := range keys {
			if k == d {
				return true
			}
		}
		return false
	}
	out := make([]byte, 0, len(raw))
	pos := 0 // raw[:pos] is decided
	kept := 0
	for i, m := range members {
		if !drop(m.key) {
			kept++
			continue
		}
		switch {
		case kept > 0:
			// Take out the comma before it with it: from the end of the last kept
			// member's value (everything after that up to here was dropped already).
			prevEnd := members[i-1].end
			if pos > prevEnd {
				prevEnd = pos
			}
			out = append(out, raw[pos:prevEnd]...)
			pos = m.end
		case i+1 < len(members):
			// The first kept member will follow: take out up to the next key.
			out = append(out, raw[pos:m.keyStart]...)
			pos = members[i+1].keyStart
		default:
			out = append(out, raw[pos:m.keyStart]...)
			pos = m.end
		}
	}
	out = append(out, raw[pos:]...)
	return out, nil
}

// scanObject finds the value span of every top-level member of a JSON object, the
// members in order, and the offset of its closing brace.
func scanObject(raw []byte) (map[string][]span, []member, int, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("not JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, 0, errors.New("not a JSON object")
	}
	spans := map[string][]span{}
	var members []member
	for dec.More() {
		keyStart := int(dec.InputOffset())
		for keyStart < len(raw) && (isSpace(raw[keyStart]) || raw[keyStart] == ',') {
			keyStart++
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, 0, fmt.Errorf("not JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, nil, 0, errors.New("not a JSON object")
		}
		keyEnd := int(dec.InputOffset())
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, 0, fmt.Errorf("not JSON: %w", err)
		}
		end := int(dec.InputOffset())
		start := keyEnd
		for start < end && (isSpace(raw[start]) || raw[start] == ':') {
			start++
		}
		spans[key] = append(spans[key], span{start, end})
		members = append(members, member{key: key, keyStart: keyStart, start: start, end: end})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, nil, 0, fmt.Errorf("not JSON: %w", err)
	}
	closing := int(dec.InputOffset()) - 1
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, 0, errors.New("trailing data after the JSON object")
	}
	return spans, members, closing, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// floatSeconds encodes t the way Ruby's Time#to_f looks in JSON: epoch seconds that
// always carry a fraction. A whole second must still be written "1795936334.0": Sidekiq 8
// reads an integer timestamp as milliseconds.
func floatSeconds(t time.Time) []byte {
	f := float64(t.UnixNano()) / 1e9
	b := strconv.AppendFloat(nil, f, 'f', -1, 64)
	if !bytes.ContainsRune(b, '.') {
		b = append(b, '.', '0')
	}
	return b
}

// jobTimestamp encodes t in the payload's own style: integer milliseconds for a
// Sidekiq 8 payload, float seconds otherwise.
func jobTimestamp(t time.Time, millis bool) []byte {
	if millis {
		return strconv.AppendInt(nil, t.UnixMilli(), 10)
	}
	return floatSeconds(t)
}

// scoreString is a ZSET score for t: float epoch seconds, as Sidekiq uses for schedule,
// retry and dead in every version.
func scoreString(t time.Time) string { return string(floatSeconds(t)) }
