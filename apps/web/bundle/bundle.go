// Package bundle builds the web app's static files (apps/web/dist) in the shape the web
// port serves best (apps/web/README.md): the client compiled to WebAssembly
// (GOOS=js GOARCH=wasm, -trimpath -ldflags=-s -w), Go's wasm_exec.js, and the UI's script
// and style, each named by its content hash and cached immutably; index.html, revalidated
// on every load, loads them with Subresource Integrity, so a tampered or truncated file is
// refused by the browser before it runs. Every file has .gz and .br variants beside it.
//
// Compressing the 30 MB module takes tens of seconds, so compressed variants are cached
// by content hash in the user's cache directory: a rebuild of the same bytes costs nothing.
package bundle

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"

	"github.com/guardyn/guardyn/apps/web/ui"
)

// Options say where the build reads and writes.
type Options struct {
	// ModuleDir is the root of the Guardyn module (the directory of go.mod).
	ModuleDir string
	// Out is the directory to create or replace.
	Out string
	// Go is the go command; empty means "go" on PATH.
	Go string
	// Fast writes only .gz variants, at gzip's fastest level: for tests, where the build's
	// time matters more than the bytes (brotli takes tens of seconds on the module).
	Fast bool
	// CacheDir keeps compressed variants by content hash; empty means
	// os.UserCacheDir()/guardyn-web, and "-" means no cache.
	CacheDir string
}

// Result names what a build wrote.
type Result struct {
	// Assets maps a source name (app.wasm, app.js, ...) to its hashed file name.
	Assets map[string]string
	// Integrity maps a source name to its SRI value (sha384-...).
	Integrity map[string]string
}

// WasmPackage is the web app's main package, built for js/wasm.
const WasmPackage = "./apps/web/wasm"

// Build writes the app into opts.Out, replacing what was there only once the new build is
// complete.
func Build(ctx context.Context, opts Options) (*Result, error) {
	goCmd := opts.Go
	if goCmd == "" {
		goCmd = "go"
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(opts.Out)), ".dist-")
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}

	sources := map[string][]byte{}
	wasmPath := filepath.Join(tmp, "app.wasm")
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-ldflags=-s -w", "-o", wasmPath, WasmPackage)
	cmd.Dir = opts.ModuleDir
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bundle: go build %s for js/wasm: %w\n%s", WasmPackage, err, out)
	}
	if sources["app.wasm"], err = os.ReadFile(wasmPath); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	os.Remove(wasmPath)
	goroot, err := exec.CommandContext(ctx, goCmd, "env", "GOROOT").Output()
	if err != nil {
		return nil, fmt.Errorf("bundle: go env GOROOT: %w", err)
	}
	if sources["wasm_exec.js"], err = os.ReadFile(filepath.Join(strings.TrimSpace(string(goroot)), "lib", "wasm", "wasm_exec.js")); err != nil {
		return nil, fmt.Errorf("bundle: Go's wasm_exec.js: %w", err)
	}
	for _, name := range []string{"app.js", "app.css"} {
		if sources[name], err = fs.ReadFile(ui.Files, name); err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
	}
	page, err := fs.ReadFile(ui.Files, "index.html")
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}

	res := &Result{Assets: map[string]string{}, Integrity: map[string]string{}}
	files := map[string][]byte{}
	for name, b := range sources {
		hashed := HashedName(name, b)
		res.Assets[name], res.Integrity[name] = hashed, Integrity(b)
		files[hashed] = b
	}
	index, err := fillIndex(page, res)
	if err != nil {
		return nil, err
	}
	files["index.html"] = index

	cache := opts.CacheDir
	if cache == "" {
		if d, err := os.UserCacheDir(); err == nil {
			cache = filepath.Join(d, "guardyn-web")
		}
	}
	if cache == "-" {
		cache = ""
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(files))
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		encs := encodings
		if opts.Fast {
			encs = fastEncodings
		}
		for _, enc := range encs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				z, err := compressed(cache, enc, b)
				if err == nil {
					err = os.WriteFile(filepath.Join(tmp, name+enc.ext), z, 0o644)
				}
				if err != nil {
					errs <- fmt.Errorf("bundle: %s%s: %w", name, enc.ext, err)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	if err := os.RemoveAll(opts.Out); err != nil {
		return nil, fmt.Errorf("bundle: replace %s: %w", opts.Out, err)
	}
	if err := os.Rename(tmp, opts.Out); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return res, nil
}

// HashedName is name with the first 16 hex digits of its content's SHA-256 before the
// extension (app.wasm -> app.3f9a2c1d00e41b7a.wasm): the web port caches such names for a
// year, and a new build is a new name. The server wants a digit in the hash; the rare
// all-letter one gets its last digit replaced.
func HashedName(name string, content []byte) string {
	sum := sha256.Sum256(content)
	h := []byte(hex.EncodeToString(sum[:8]))
	if !bytes.ContainsAny(h, "0123456789") {
		h[len(h)-1] = '0'
	}
	ext := filepath.Ext(name)
	return strings.TrimSuffix(name, ext) + "." + string(h) + ext
}

// Integrity is the Subresource Integrity value of content: sha384- and its base64 digest.
func Integrity(content []byte) string {
	sum := sha512.Sum384(content)
	return "sha384-" + base64.StdEncoding.EncodeToString(sum[:])
}

var placeholder = regexp.MustCompile(`\{\{(sri )?([a-z_.]+)\}\}`)

// fillIndex replaces index.html's {{name}} and {{sri name}} placeholders; an unknown name
// is an error, so the page never references a file the build did not write.
func fillIndex(page []byte, res *Result) ([]byte, error) {
	var missing []string
	out := placeholder.ReplaceAllFunc(page, func(m []byte) []byte {
		sub := placeholder.FindSubmatch(m)
		name := string(sub[2])
		v, ok := res.Assets[name]
		if len(sub[1]) > 0 {
			v, ok = res.Integrity[name]
		}
		if !ok {
			missing = append(missing, name)
		}
		return []byte(v)
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("bundle: index.html names unknown assets %v", missing)
	}
	return out, nil
}

type encoding struct {
	ext      string
	compress func([]byte) ([]byte, error)
	fast     bool
}

// name is the cache file suffix of an encoding.
func (e encoding) name() string {
	if e.fast {
		return e.ext + "1"
	}
	return e.ext
}

// brotliQuality trades size for time: quality 5 on the 30 MB module is within 4% of
// quality 7's size at a fifth of its time.
const brotliQuality = 5

// fastEncodings is gzip at its fastest, alone (Options.Fast).
var fastEncodings = []encoding{{".gz", func(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	err := w.Close()
	return buf.Bytes(), err
}, true}}

var encodings = []encoding{
	{".gz", func(b []byte) ([]byte, error) {
		var buf bytes.Buffer
		w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if _, err := w.Write(b); err != nil {
			return nil, err
		}
		err := w.Close()
		return buf.Bytes(), err
	}, false},
	{".br", func(b []byte) ([]byte, error) {
		var buf bytes.Buffer
		w := brotli.NewWriterOptions(&buf, brotli.WriterOptions{Quality: brotliQuality, LGWin: 24})
		if _, err := w.Write(b); err != nil {
			return nil, err
		}
		err := w.Close()
		return buf.Bytes(), err
	}, false},
}

// compressed returns b compressed by enc, from the cache when it holds it.
func compressed(cache string, enc encoding, b []byte) ([]byte, error) {
	sum := sha256.Sum256(b)
	var path string
	if cache != "" {
		path = filepath.Join(cache, hex.EncodeToString(sum[:])+enc.name())
		if z, err := os.ReadFile(path); err == nil {
			return z, nil
		}
	}
	z, err := enc.compress(b)
	if err != nil {
		return nil, err
	}
	if path != "" && os.MkdirAll(cache, 0o755) == nil {
		// A cache that cannot be written only costs time next build.
		if f, err := os.CreateTemp(cache, ".tmp-"); err == nil {
			_, werr := f.Write(z)
			if cerr := f.Close(); werr == nil && cerr == nil {
				os.Rename(f.Name(), path)
			}
			os.Remove(f.Name())
		}
	}
	return z, nil
}
