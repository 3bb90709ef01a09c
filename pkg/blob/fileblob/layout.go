package fileblob

import (
	"strings"
	"unicode/utf8"
)

// A key is stored as a path of entries. The key is cut into tokens from
// left to right: a token ends after a '/' (a directory token, "seg/"), or
// when its escaped form reaches fullLen bytes (a continuation token, part
// of a long segment), or at the end of the key (the object token). Every
// token's entry name is its escaped form:
//
//	object token "out.json"       → file      "out.json"
//	directory token "results/"    → directory "results%2F"
//	continuation token "xxx…x"    → directory "xxx…x%+"
//
// Escaping turns '%', '/' and a leading '.' into %XX (uppercase hex) and
// keeps every other byte, so names stay readable, no name is "." or "..",
// and the three kinds never share a name: only directory names end in
// "%2F", only continuation names end in "%+", and a name is decoded only
// if escaping its decoding gives it back. "%tmp" (in-progress writes) can
// therefore never be a key's entry.
//
// Where a token ends depends only on the token itself, so two keys with the
// same start are cut the same way up to where they differ, and no
// directory or continuation token is a proper prefix of another in the
// same directory. The entries of a directory then cover disjoint ranges of
// keys in the order of their tokens, and a walk that visits entries sorted
// by token yields keys in byte order.
const (
	// fullLen: a token whose escaped form is longer than this is full. One
	// more rune adds at most maxRuneEsc bytes, and a continuation name adds
	// "%+", so names stay within nameMax.
	fullLen    = nameMax - maxRuneEsc - len(contSuffix)
	nameMax    = 255
	maxRuneEsc = 4
	contSuffix = "%+"
	dirSuffix  = "%2F"
	tmpDir     = "%tmp"
)

type kind uint8

const (
	kindObject kind = iota
	kindDir         // token ends with '/'
	kindCont        // full token inside a long segment
)

// escLen is the length of r's escaped form, at the start of a token or not.
func escLen(r rune, first bool) int {
	switch {
	case r == '%' || r == '/' || (first && r == '.'):
		return 3
	case r < utf8.RuneSelf:
		return 1
	default:
		return utf8.RuneLen(r)
	}
}

const hexDigits = "0123456789ABCDEF"

// escape returns the escaped form of a token (which may end in '/').
func escape(tok string) string {
	var b strings.Builder
	b.Grow(len(tok) + 8)
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c == '%' || c == '/' || (i == 0 && c == '.') {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// unescape reverses escape, strictly: it fails on anything escape cannot
// produce.
func unescape(name string) (string, bool) {
	if !strings.Contains(name, "%") {
		if name == "" || name[0] == '.' {
			return "", false
		}
		return name, true
	}
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(name) {
			return "", false
		}
		hi, lo := strings.IndexByte(hexDigits, name[i+1]), strings.IndexByte(hexDigits, name[i+2])
		if hi < 0 || lo < 0 {
			return "", false
		}
		b.WriteByte(byte(hi<<4 | lo))
		i += 2
	}
	tok := b.String()
	if escape(tok) != name {
		return "", false
	}
	return tok, true
}

// split cuts s (a key or a key prefix) into its complete tokens and the
// rest: for a key, the object token; for a prefix, the start of the next
// token ("" when s ends in '/').
func split(s string) (toks []string, rest string) {
	start, n := 0, 0
	for i, r := range s {
		n += escLen(r, i == start)
		end := i + utf8.RuneLen(r)
		if r == '/' || (n > fullLen && end < len(s)) {
			toks = append(toks, s[start:end])
			start, n = end, 0
		}
	}
	return toks, s[start:]
}

// tokenKind is the kind of a complete token.
func tokenKind(tok string) kind {
	if strings.HasSuffix(tok, "/") {
		return kindDir
	}
	return kindCont
}

// entryName is the file or directory name of a token of kind k.
func entryName(tok string, k kind) string {
	if k == kindCont {
		return escape(tok) + contSuffix
	}
	return escape(tok)
}

// decodeName returns the token and kind a directory entry stands for, or
// false when the entry is not one this package wrote.
func decodeName(name string, isDir bool) (string, kind, bool) {
	if isDir {
		if base, ok := strings.CutSuffix(name, contSuffix); ok {
			tok, ok := unescape(base)
			if !ok || strings.Contains(tok, "/") || !full(tok) {
				return "", 0, false
			}
			return tok, kindCont, true
		}
		tok, ok := unescape(name)
		if !ok || strings.IndexByte(tok, '/') != len(tok)-1 {
			return "", 0, false
		}
		return tok, kindDir, true
	}
	tok, ok := unescape(name)
	if !ok || strings.Contains(tok, "/") {
		return "", 0, false
	}
	return tok, kindObject, true
}

// full reports whether a token without '/' is a continuation token's
// length.
func full(tok string) bool {
	n := 0
	for i, r := range tok {
		n += escLen(r, i == 0)
	}
	return n > fullLen
}

// objectPath returns the directory entries and the object entry of key:
// the path of the object's parent directory (relative to the root, "."
// for the root itself) and the full path of the object.
func objectPath(key string) (dirs []string, obj string) {
	toks, last := split(key)
	dirs = make([]string, len(toks))
	for i, tok := range toks {
		dirs[i] = entryName(tok, tokenKind(tok))
	}
	return dirs, joinPath(append(dirs[:len(dirs):len(dirs)], escape(last))...)
}

func joinPath(names ...string) string {
	if len(names) == 0 {
		return "."
	}
	return strings.Join(names, "/")
}
