// Package ui holds the web app's page, script and style sources (plain modern JS and CSS,
// no framework, no build step of their own). The bundler (package bundle) names each by
// its content hash and fills index.html's placeholders: {{name}} with an asset's hashed
// path and {{sri name}} with its Subresource Integrity hash.
package ui

import "embed"

// Files are index.html, app.js and app.css.
//
//go:embed index.html app.js app.css
var Files embed.FS
