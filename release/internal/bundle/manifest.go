package bundle

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Names of the bundle's top-level files.
const (
	ManifestFile    = "manifest.json"
	ManifestSigFile = "manifest.json.sig"
	ImagesFile      = "images.json"
	ProvenanceFile  = "attest/provenance.intoto.json"
)

// Manifest lists every file of a bundle (except itself and its signature)
// with its SHA-256; its signature covers the whole bundle.
type Manifest struct {
	Version         string  `json:"version"`
	Commit          string  `json:"commit"`
	SourceDateEpoch int64   `json:"sourceDateEpoch"`
	Files           []Entry `json:"files"`
}

// Entry is one file of the bundle.
type Entry struct {
	Path   string `json:"path"` // slash-separated, relative to the bundle
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// hashFile returns a file's SHA-256 (hex) and size.
func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// listFiles returns the regular files under dir (slash paths), sorted,
// except the manifest and its signature; anything else (a symlink, a
// device) is an error.
func listFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file", rel)
		}
		if rel == ManifestFile || rel == ManifestSigFile {
			return nil
		}
		out = append(out, rel)
		return nil
	})
	sort.Strings(out)
	return out, err
}

// writeManifest hashes every file under dir into the manifest and writes it.
func writeManifest(dir string, m Manifest) ([]byte, error) {
	files, err := listFiles(dir)
	if err != nil {
		return nil, err
	}
	m.Files = nil
	for _, f := range files {
		sum, n, err := hashFile(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		m.Files = append(m.Files, Entry{Path: f, SHA256: sum, Size: n})
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	return b, os.WriteFile(filepath.Join(dir, ManifestFile), b, 0o644)
}

// writeTarball writes dir as a reproducible gzip'd tar at path: sorted
// entries under a top directory named after dir, fixed times and owners.
func writeTarball(dir, path string, mtime time.Time) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// The default level: BestCompression took 62 s of a 147 s release for
	// 272 MB against the default's size within a few percent (the images'
	// layers are gzip'd already). Either is deterministic for one Go.
	zw, err := gzip.NewWriterLevel(f, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	top := filepath.Base(dir)
	var paths []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir {
			paths = append(paths, p)
		}
		return err
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		name := top + "/" + filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: name, ModTime: mtime.UTC(), Format: tar.FormatPAX, Mode: 0o644}
		switch {
		case fi.IsDir():
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, name+"/", 0o755
		case fi.Mode().IsRegular():
			h.Typeflag, h.Size = tar.TypeReg, fi.Size()
			if fi.Mode()&0o111 != 0 {
				h.Mode = 0o755
			}
		default:
			return fmt.Errorf("tarball: %s: not a regular file", rel)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, src)
			src.Close()
			if err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// DirName is the bundle directory's name for a version.
func DirName(version string) string { return "guardyn-" + version }

func relSlash(parts ...string) string { return strings.Join(parts, "/") }
