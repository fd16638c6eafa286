// Package webtest drives the web app (apps/web) in a real headless chromium against a real
// platform (tools/devserver/platform) on loopback, with chromedp: browser users and a
// command-line user (libs/client over native gRPC) chat, restart, link devices and meet a
// key change; tampered code, a server answering garbage, an oversized message and a lost
// connection each show their state. Its tests are the package; it exports nothing.
package webtest
