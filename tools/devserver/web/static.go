package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"
)

// Cache-Control values. A file whose name carries a hash of its content never changes
// under that name, so browsers keep it for a year without asking; every other file,
// index.html above all, is revalidated on each use (by its ETag), so a new release is
// picked up on the next load and then fetches only the hashed files it does not have.
const (
	cacheImmutable  = "public, max-age=31536000, immutable"
	cacheRevalidate = "no-cache"
)

// hashedName matches names with a content hash before the extension, as bundlers write
// them: app.3f9a2c1d.js, app-5XJFG3KT.wasm (8 to 64 letters and digits, at least one
// digit). A hashed file the pattern misses is merely revalidated; the pattern must not
// match a name that is not hashed, as app-settings.js.
var hashedName = regexp.MustCompile(`[.-]([0-9A-Za-z]{8,64})\.[0-9A-Za-z]+$`)

func isHashed(name string) bool {
	m := hashedName.FindStringSubmatch(path.Base(name))
	return m != nil && strings.ContainsAny(m[1], "0123456789")
}

// contentTypes wins over the system's MIME table, which varies between machines: a
// browser refuses a module script or WebAssembly served with another type, and nosniff
// forbids guessing.
var contentTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".mjs":         "text/javascript; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".wasm":        "application/wasm",
	".json":        "application/json",
	".map":         "application/json",
	".webmanifest": "application/manifest+json",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".ico":         "image/x-icon",
	".woff2":       "font/woff2",
	".txt":         "text/plain; charset=utf-8",
}

func contentType(name string) string {
	ext := path.Ext(name)
	if t, ok := contentTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}

// encodings are the precompressed variants looked for, best first: name.br, name.gz.
var encodings = []struct{ token, suffix string }{{"br", ".br"}, {"gzip", ".gz"}}

// static serves the app's files.
type static struct{ files fs.FS }

func newStatic(files fs.FS) *static { return &static{files: files} }

func (s *static) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, ok := fileName(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	body, encoding, modTime, err := s.read(name, r.Header.Get("Accept-Encoding"))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType(name))
	h.Add("Vary", "Accept-Encoding")
	if encoding != "" {
		h.Set("Content-Encoding", encoding)
	}
	if isHashed(name) {
		h.Set("Cache-Control", cacheImmutable)
	} else {
		h.Set("Cache-Control", cacheRevalidate)
	}
	sum := sha256.Sum256(body)
	h.Set("ETag", `"`+hex.EncodeToString(sum[:16])+encoding+`"`)
	http.ServeContent(w, r, name, modTime, bytes.NewReader(body))
}

// fileName maps a URL path to a file of the app: "/" is index.html; no segment may be
// empty or start with a dot (no hidden files, no "..").
func fileName(urlPath string) (string, bool) {
	if urlPath == "/" {
		return "index.html", true
	}
	name := strings.TrimPrefix(urlPath, "/")
	if !fs.ValidPath(name) || name == "." {
		return "", false
	}
	for seg := range strings.SplitSeq(name, "/") {
		if strings.HasPrefix(seg, ".") {
			return "", false
		}
	}
	return name, true
}

// read returns the best representation of the regular file name that the client
// accepts: a precompressed variant if one exists, else the file itself.
func (s *static) read(name, acceptEncoding string) (body []byte, encoding string, modTime time.Time, err error) {
	info, err := fs.Stat(s.files, name)
	if err != nil {
		return nil, "", time.Time{}, err
	}
	if !info.Mode().IsRegular() {
		return nil, "", time.Time{}, errors.New("not a regular file")
	}
	for _, e := range encodings {
		if !accepts(acceptEncoding, e.token) {
			continue
		}
		if b, err := fs.ReadFile(s.files, name+e.suffix); err == nil {
			return b, e.token, info.ModTime(), nil
		}
	}
	b, err := fs.ReadFile(s.files, name)
	return b, "", info.ModTime(), err
}

// accepts reports whether an Accept-Encoding header allows coding (q=0 refuses it).
func accepts(header, coding string) bool {
	for part := range strings.SplitSeq(header, ",") {
		token, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(token), coding) {
			continue
		}
		q := strings.ReplaceAll(params, " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}
