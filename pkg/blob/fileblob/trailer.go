package fileblob

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// An object file holds the object's bytes, then its attributes as JSON,
// then a footer: the JSON's length as 8 hex digits and the magic
// "jfblob1\n". Keeping the attributes in the same file as the bytes makes
// one rename replace both at once.
const (
	magic     = "jfblob1\n"
	footerLen = 8 + len(magic)
	// tailRead is how much of an object's end one read fetches; attributes
	// that do not fit take a second read.
	tailRead = 2048
)

// attrs is the JSON written after an object's bytes.
type attrs struct {
	Key         string    `json:"key"`
	Size        int64     `json:"size"`
	ContentType string    `json:"content_type"`
	ETag        string    `json:"etag"`
	ModTime     time.Time `json:"mod_time"`
}

func (a attrs) blob() blob.Attrs {
	return blob.Attrs{Key: a.Key, Size: a.Size, ContentType: a.ContentType, ETag: a.ETag, ModTime: a.ModTime}
}

// trailer returns the bytes to append after an object's data.
func trailer(a attrs) []byte {
	js, err := json.Marshal(a)
	if err != nil {
		// attrs holds only strings, numbers and a time: it always marshals.
		panic(fmt.Sprintf("fileblob: marshal attributes: %v", err))
	}
	return append(fmt.Appendf(js, "%08x", len(js)), magic...)
}

// readAttrs reads the attributes at the end of an open object file, whose
// size is fileSize.
func readAttrs(f io.ReaderAt, fileSize int64, name string) (attrs, error) {
	corrupt := func(why string, args ...any) (attrs, error) {
		return attrs{}, errcode.New(errcode.Internal, "fileblob: object file %s is corrupt: %s", name, fmt.Sprintf(why, args...))
	}
	if fileSize < int64(footerLen) {
		return corrupt("%d bytes is too short", fileSize)
	}
	n := min(fileSize, tailRead)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, fileSize-n); err != nil {
		return attrs{}, fmt.Errorf("fileblob: read attributes of %s: %w", name, err)
	}
	foot := buf[len(buf)-footerLen:]
	if string(foot[8:]) != magic {
		return corrupt("no footer")
	}
	jsLen, err := strconv.ParseUint(string(foot[:8]), 16, 32)
	if err != nil {
		return corrupt("footer length %q", foot[:8])
	}
	dataLen := fileSize - int64(footerLen) - int64(jsLen)
	if dataLen < 0 {
		return corrupt("attributes of %d bytes do not fit", jsLen)
	}
	var js []byte
	if int64(jsLen)+int64(footerLen) <= n {
		js = buf[len(buf)-footerLen-int(jsLen) : len(buf)-footerLen]
	} else {
		js = make([]byte, jsLen)
		if _, err := f.ReadAt(js, dataLen); err != nil {
			return attrs{}, fmt.Errorf("fileblob: read attributes of %s: %w", name, err)
		}
	}
	var a attrs
	if err := json.Unmarshal(js, &a); err != nil {
		return corrupt("attributes: %v", err)
	}
	if a.Size != dataLen {
		return corrupt("attributes say %d bytes, file holds %d", a.Size, dataLen)
	}
	return a, nil
}

// statAttrs reads the attributes of an open object file.
func statAttrs(f *os.File, name string) (attrs, error) {
	fi, err := f.Stat()
	if err != nil {
		return attrs{}, fmt.Errorf("fileblob: stat %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return attrs{}, errcode.New(errcode.NotFound, "blob %s: not found", name)
	}
	return readAttrs(f, fi.Size(), name)
}
