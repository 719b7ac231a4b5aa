package ehr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// DoURL is Do for an absolute URL on the EHR's scheme and host, such as a
// Bulk Data status URL (the kick-off's Content-Location). req.Path is
// ignored; req.ResourceType labels metrics and errors. A URL on another
// scheme or host is refused (ErrInvalidRequest): the token stays with the
// EHR. Errors never contain the URL.
func (c *Client) DoURL(ctx context.Context, req Request, rawURL string) (*Response, error) {
	u, logPath, err := c.absURL(rawURL)
	if err != nil {
		return nil, err
	}
	if !c.sameHost(u) {
		return nil, fmt.Errorf("%w: URL leaves the EHR's scheme and host", ErrInvalidRequest)
	}
	return c.doURL(ctx, req, u, logPath, c.retryMax)
}

// absURL parses an absolute (or base-relative) URL and returns it with a
// log path free of its query.
func (c *Client) absURL(raw string) (*url.URL, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", fmt.Errorf("%w: unreadable URL", ErrInvalidRequest)
	}
	dir := *c.base
	dir.Path += "/"
	if dir.RawPath != "" {
		dir.RawPath += "/"
	}
	u = dir.ResolveReference(u)
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil {
		return nil, "", fmt.Errorf("%w: not an http or https URL", ErrInvalidRequest)
	}
	u.Fragment, u.RawFragment = "", ""
	u.RawQuery = escape(u.RawQuery, true)
	logPath := u.EscapedPath()
	if c.sameHost(u) {
		logPath = strings.TrimPrefix(logPath, c.base.EscapedPath())
	}
	if !strings.HasPrefix(logPath, "/") {
		logPath = "/" + logPath
	}
	if u.RawQuery != "" {
		logPath += "?…"
	}
	return u, logPath, nil
}

func (c *Client) sameHost(u *url.URL) bool {
	return u.Scheme == c.base.Scheme && strings.EqualFold(u.Host, c.base.Host)
}

// Open sends one GET to rawURL and returns the answer whatever its
// status, its body unread, for streaming large files (Bulk Data output).
// header is added to the request (Range, Accept-Encoding: with an
// Accept-Encoding set the body is not decompressed). The token is sent
// only when withToken is true, and then only to the EHR's scheme and host
// (another host is ErrInvalidRequest); without the token any http or
// https host may serve the file. A redirect never carries the token to
// another host. A 401 refreshes the token once. There are no short
// retries. Config.Timeout bounds the wait for the headers and each pause
// between reads of the body, not the whole download. The caller closes
// the body. Transport failures are *TransientError, without the URL.
func (c *Client) Open(ctx context.Context, rawURL string, header http.Header, withToken bool) (*http.Response, error) {
	u, logPath, err := c.absURL(rawURL)
	if err != nil {
		return nil, err
	}
	if withToken && !c.sameHost(u) {
		return nil, fmt.Errorf("%w: will not send the token to another host", ErrInvalidRequest)
	}
	hc := *c.http
	hc.Timeout = 0 // idleBody bounds the pauses instead
	var stale string
	for try := 0; ; try++ {
		tok := ""
		if withToken {
			if tok, err = c.auth.token(ctx, stale); err != nil {
				return nil, err
			}
		}
		actx, cancel := context.WithCancel(ctx)
		req, err := http.NewRequestWithContext(actx, http.MethodGet, u.String(), nil)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("%w: GET %s", ErrInvalidRequest, logPath)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		req.Header.Set("User-Agent", c.userAgent)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		body := &idleBody{cancel: cancel, timeout: c.timeout}
		body.timer = time.AfterFunc(c.timeout, cancel)
		start := c.now()
		resp, err := hc.Do(req)
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		if c.hooks.OnRequest != nil {
			c.hooks.OnRequest("other", http.MethodGet, status, c.now().Sub(start))
		}
		c.log.Debug("ehr request", "method", http.MethodGet, "path", logPath, "status", status, "attempt", try+1)
		if err != nil {
			body.Close()
			if cerr := ctx.Err(); cerr != nil {
				return nil, fmt.Errorf("ehr: GET %s: %w", logPath, cerr)
			}
			reason, _ := transportReason(err)
			if errors.Is(err, context.Canceled) {
				reason = "timeout" // our idle timer fired
			}
			return nil, &TransientError{Reason: reason, Method: http.MethodGet, Attempts: 1}
		}
		if resp.StatusCode == http.StatusUnauthorized && withToken && try == 0 && c.auth.refreshable() {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			body.Close()
			stale = tok
			continue
		}
		body.timer.Reset(c.timeout)
		body.rc = resp.Body
		resp.Body = body
		return resp, nil
	}
}

// idleBody cancels a download when no read completes within timeout.
type idleBody struct {
	rc      io.ReadCloser
	timer   *time.Timer
	timeout time.Duration
	cancel  context.CancelFunc
	once    sync.Once
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.timer.Reset(b.timeout)
	return n, err
}

func (b *idleBody) Close() error {
	var err error
	b.once.Do(func() {
		b.timer.Stop()
		if b.rc != nil {
			err = b.rc.Close()
		}
		b.cancel()
	})
	return err
}
