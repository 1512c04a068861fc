package httpapi

import "unicode/utf8"

// fastField reads the common request body {"<key>":"<plain string>"}
// (whitespace allowed) without encoding/json: a string without escapes or
// control characters, in valid UTF-8. ok is false for anything else, which
// the caller then decodes with encoding/json, so the two agree on every
// input this accepts.
func fastField(body []byte, key string) (string, bool) {
	i := skipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return "", false
	}
	i = skipWS(body, i+1)
	if i+len(key)+2 > len(body) || body[i] != '"' || string(body[i+1:i+1+len(key)]) != key || body[i+1+len(key)] != '"' {
		return "", false
	}
	i = skipWS(body, i+len(key)+2)
	if i >= len(body) || body[i] != ':' {
		return "", false
	}
	i = skipWS(body, i+1)
	if i >= len(body) || body[i] != '"' {
		return "", false
	}
	start := i + 1
	end := -1
	for j := start; j < len(body); j++ {
		c := body[j]
		if c == '"' {
			end = j
			break
		}
		if c == '\\' || c < 0x20 {
			return "", false
		}
	}
	if end < 0 {
		return "", false
	}
	i = skipWS(body, end+1)
	if i >= len(body) || body[i] != '}' {
		return "", false
	}
	if skipWS(body, i+1) != len(body) {
		return "", false
	}
	v := body[start:end]
	if !utf8.Valid(v) {
		return "", false
	}
	return string(v), true
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
