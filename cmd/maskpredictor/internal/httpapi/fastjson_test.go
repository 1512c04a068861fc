package httpapi

import (
	"encoding/json"
	"testing"
)

func TestFastField(t *testing.T) {
	for body, want := range map[string]string{
		`{"mask_name":"3M Aura"}`:           "3M Aura",
		" {\n\t\"mask_name\" : \"x\" }\r\n": "x",
		`{"mask_name":""}`:                  "",
		`{"mask_name":"Ω—日本"}`:              "Ω—日本",
	} {
		if got, ok := fastField([]byte(body), "mask_name"); !ok || got != want {
			t.Errorf("%q: %q %v", body, got, ok)
		}
	}
	for _, body := range []string{
		``, `{}`, `{"mask_name":"a\"b"}`, `{"mask_name":"a\u0041"}`, `{"mask_name":"a` + "\t" + `"}`,
		`{"mask_name":"a","x":1}`, `{"mask_name":"a"} x`, `{"mask_name":5}`, `{"mask_names":"a"}`,
		`{"mask_nam":"a"}`, "{\"mask_name\":\"\xff\"}", `["mask_name","a"]`, `{"mask_name":"a"`, `{"mask_name" "a"}`,
	} {
		if got, ok := fastField([]byte(body), "mask_name"); ok {
			t.Errorf("%q accepted: %q", body, got)
		}
	}
}

// FuzzFastField: whatever the fast path accepts, encoding/json reads the same.
func FuzzFastField(f *testing.F) {
	for _, s := range []string{`{"mask_name":"3M"}`, ` { "mask_name" : "a b" } `, `{"mask_name":"\u00e9"}`, `{"mask_name":"é"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := fastField(body, "mask_name")
		if !ok {
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil || len(m) != 1 {
			t.Fatalf("accepted %q, encoding/json: %v %v", body, err, m)
		}
		var s string
		if err := json.Unmarshal(m["mask_name"], &s); err != nil || s != got {
			t.Fatalf("%q: fast %q, encoding/json %q (%v)", body, got, s, err)
		}
	})
}
