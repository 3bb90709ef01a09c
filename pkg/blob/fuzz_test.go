package blob_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jobfleet/jobfleet/pkg/blob"
)

// FuzzValidKey checks that no key the blob port accepts could escape a
// directory-backed store's root or confuse an S3 key.
func FuzzValidKey(f *testing.F) {
	for _, k := range []string{"a", "a/b", "../x", "a/../b", "/abs", "a//b", "a/./b", "a\\b", "a\x00b", "ключ/🙂", strings.Repeat("x", 1025), "a/"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if blob.ValidKey(key) != nil {
			return
		}
		if key == "" || len(key) > blob.MaxKeyLen || !utf8.ValidString(key) || strings.HasPrefix(key, "/") || strings.ContainsRune(key, '\\') {
			t.Fatalf("accepted %q", key)
		}
		for _, seg := range strings.Split(key, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("accepted %q with segment %q", key, seg)
			}
		}
		for _, r := range key {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("accepted %q with a control character", key)
			}
		}
	})
}
