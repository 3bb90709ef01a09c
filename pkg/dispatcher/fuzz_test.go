package dispatcher

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeSubmission: the strict decoder of HTTP bodies and ingress
// messages never panics, and what it accepts survives a JSON round trip.
func FuzzDecodeSubmission(f *testing.F) {
	f.Add([]byte(`{"type":"echo","payload":{"hi":1}}`), false)
	f.Add([]byte(`{"type":"echo","payload_ref":"uploads/x.json"}`), true)
	f.Add([]byte(`{"type":"echo","type":"sleep"}`), false)
	f.Add([]byte(`{"Type":"echo"}`), false)
	f.Add([]byte(`{"type":"echo"} trailing`), false)
	f.Add([]byte("{\"type\":\"\xff\"}"), false)
	f.Add([]byte(`{"type":"sleep","timeout":"1h","delay":3.5,"run_at":null,"max_attempts":2,"key":"k"}`), false)
	f.Fuzz(func(t *testing.T, b []byte, allowRef bool) {
		s, rerr := decodeSubmission(b, "the body", allowRef)
		if rerr != nil {
			if rerr.p == nil || rerr.p.Status != 400 {
				t.Fatalf("a refusal must be a 400 problem: %+v", rerr.p)
			}
			return
		}
		if s.PayloadRef != "" && !allowRef {
			t.Fatalf("payload_ref accepted over HTTP: %q", b)
		}
		enc, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", s, err)
		}
		if _, rerr := decodeSubmission(enc, "again", true); rerr != nil {
			t.Fatalf("re-decode of %s: %v", enc, rerr.p.Detail)
		}
	})
}

// FuzzParseRange: the logs endpoint's Range header parser never panics and
// only resolves ranges inside the object.
func FuzzParseRange(f *testing.F) {
	for _, h := range []string{"bytes=0-9", "bytes=-5", "bytes=5-", "bytes=9-3", "bytes=0-1,2-3", "items=0-1", "bytes=99999999999999999999-"} {
		f.Add(h, int64(10))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -size
		}
		br, ok := parseRange(h)
		if !ok {
			return
		}
		rng, ok := br.resolve(size)
		if !ok {
			return
		}
		if rng.Offset < 0 || rng.Length < 1 || rng.Offset+rng.Length > size {
			t.Fatalf("%q on %d bytes resolved outside the object: %+v", h, size, rng)
		}
	})
}
