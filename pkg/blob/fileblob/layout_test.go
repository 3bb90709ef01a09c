package fileblob

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/blob/blobtest"
)

func TestEscape(t *testing.T) {
	t.Parallel()
	cases := []struct{ tok, name string }{
		{"out.json", "out.json"},
		{"results/", "results%2F"},
		{".hidden", "%2Ehidden"},
		{"a.b.", "a.b."},
		{"100%", "100%25"},
		{"%2F", "%252F"},
		{"日本語", "日本語"},
		{"with space", "with space"},
		{"./", "%2E%2F"},
		{"/", "%2F"},
	}
	for _, c := range cases {
		require.Equal(t, c.name, escape(c.tok), "escape %q", c.tok)
		tok, ok := unescape(c.name)
		require.True(t, ok, "unescape %q", c.name)
		require.Equal(t, c.tok, tok)
	}
	for _, bad := range []string{"", ".", "..", ".x", "%", "%2", "%zz", "%2f", "%41", "%tmp", "a%", "x%2Fy%"} {
		_, ok := unescape(bad)
		require.False(t, ok, "unescape %q must fail", bad)
	}
}

func TestDecodeName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 400)
	toks, last := split(long)
	require.Len(t, toks, 1)
	require.Equal(t, long[len(toks[0]):], last)
	cases := []struct {
		name  string
		isDir bool
		tok   string
		kind  kind
		ok    bool
	}{
		{"a", false, "a", kindObject, true},
		{"a%2F", true, "a/", kindDir, true},
		{"a%2F", false, "", 0, false}, // a file named like a directory
		{"a", true, "", 0, false},     // a directory named like an object
		{escape(toks[0]) + contSuffix, true, toks[0], kindCont, true},
		{"short%+", true, "", 0, false}, // a continuation must be full
		{tmpDir, true, "", 0, false},
		{"a%2Fb%2F", true, "", 0, false},
		{".git", true, "", 0, false},
	}
	for _, c := range cases {
		tok, k, ok := decodeName(c.name, c.isDir)
		require.Equal(t, c.ok, ok, "decode %q (dir %v)", c.name, c.isDir)
		if ok {
			require.Equal(t, c.tok, tok)
			require.Equal(t, c.kind, k)
		}
	}
}

// checkPath checks that key's path has names within the limit that decode
// back to the key.
func checkPath(t *testing.T, key string) {
	t.Helper()
	dirs, obj := objectPath(key)
	names := strings.Split(obj, "/")
	require.Equal(t, dirs, names[:len(names)-1])
	var got strings.Builder
	for i, n := range names {
		require.LessOrEqual(t, len(n), nameMax, "name %d of key %q", i, key)
		tok, _, ok := decodeName(n, i < len(names)-1)
		require.True(t, ok, "name %q of key %q does not decode", n, key)
		got.WriteString(tok)
	}
	require.Equal(t, key, got.String())
}

func TestPathsOfOddKeys(t *testing.T) {
	t.Parallel()
	for _, k := range blobtest.OddKeys() {
		checkPath(t, k)
	}
}

// randomKey draws keys from an alphabet that exercises escaping, byte order
// around '/', multibyte runes and segments around the name limit.
func randomKey(r *rand.Rand) string {
	alphabet := []string{"a", "b", "!", "0", "/", "%", ".", "é", "日", "~", "-"}
	var b strings.Builder
	n := r.IntN(6) + 1
	for range n {
		switch r.IntN(4) {
		case 0:
			b.WriteString(strings.Repeat("x", 230+r.IntN(30)))
		case 1:
			b.WriteString(strings.Repeat("%", 75+r.IntN(15)))
		default:
			for range r.IntN(4) + 1 {
				b.WriteString(alphabet[r.IntN(len(alphabet))])
			}
		}
	}
	k := b.String()
	if len(k) > blob.MaxKeyLen {
		k = k[:blob.MaxKeyLen]
	}
	for blob.ValidKey(k) != nil {
		// Repair: no empty, "." or ".." segments, no leading or trailing '/'.
		k = strings.ReplaceAll(k, "//", "/a/")
		k = strings.TrimPrefix(k, "/")
		k = strings.TrimSuffix(k, "/")
		k = strings.ReplaceAll("/"+k+"/", "/./", "/a./")
		k = strings.ReplaceAll(k, "/../", "/a../")
		k = strings.Trim(k, "/")
		if len(k) > blob.MaxKeyLen || k == "" {
			k = "a"
		}
		for !utfValid(k) {
			k = k[:len(k)-1]
		}
	}
	return k
}

func utfValid(s string) bool { return strings.ToValidUTF8(s, "\x00") == s }

func TestSplitIsPrefixFree(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		k := randomKey(r)
		checkPath(t, k)
		// Any prefix of the key splits into the key's own tokens, then the
		// start of the next one.
		toks, _ := split(k)
		for cut := 1; cut < len(k); cut += 1 + r.IntN(40) {
			if !utfValid(k[:cut]) {
				continue
			}
			ptoks, rest := split(k[:cut])
			require.LessOrEqual(t, len(ptoks), len(toks))
			require.True(t, slices.Equal(toks[:len(ptoks)], ptoks), "prefix %d of %q", cut, k)
			if len(ptoks) < len(toks) {
				require.True(t, strings.HasPrefix(toks[len(ptoks)], rest))
			}
		}
	}
}

func TestListRandomKeys(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	b, err := Open(t.TempDir(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	ctx := t.Context()
	seen := map[string]bool{}
	for len(seen) < 150 {
		k := randomKey(r)
		if seen[k] {
			continue
		}
		seen[k] = true
		_, err := b.PutBytes(ctx, k, []byte(k), "")
		require.NoError(t, err)
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i := range 40 {
		prefix := ""
		if i > 0 {
			k := keys[r.IntN(len(keys))]
			prefix = k[:r.IntN(len(k))+1]
			if !utfValid(prefix) || blob.ValidKey(strings.TrimSuffix(prefix, "/")) != nil {
				continue
			}
		}
		var want []string
		for _, k := range keys {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		var got []string
		cursor := ""
		for {
			p, err := b.List(ctx, prefix, cursor, 1+r.IntN(20))
			require.NoError(t, err)
			for _, o := range p.Objects {
				got = append(got, o.Key)
				require.Equal(t, int64(len(o.Key)), o.Size)
			}
			if p.Next == "" {
				break
			}
			cursor = p.Next
		}
		require.Equal(t, want, got, "prefix %q", prefix)
	}
}
