// Package ui is the operator console of `ketamine-fhir serve`: a few
// server-rendered HTML pages under /ui that let clinic IT see how the sync
// goes and fix it without reading JSON.
//
// Pages (all but sign-in need a session):
//
//	GET  /ui/                 overview: records by kind and state, deliveries per
//	                          minute over the last hour (an inline SVG drawn on the
//	                          server), EHR reachability, pacer and queue, the oldest
//	                          waiting record, version and a secret-free config summary;
//	                          it updates itself (static/refresh.js) until paused
//	GET  /ui/deadletters      dead letters, filtered by kind, error class and date, paged
//	GET  /ui/waiting          waiting records grouped by reason, with what releases them
//	GET  /ui/records/{id}     one outbox row: state, EHR id and version, the EHR's
//	                          OperationOutcome when it is dead, its delivery history
//	POST /ui/retry            re-queue one dead letter or a filtered set: the first
//	                          POST shows a confirmation, the second (confirm=yes) acts
//	GET  /ui/signin, POST /ui/signin, POST /ui/signout
//	GET  /ui/static/...       the style sheet and the refresh script
//
// Templates, the style sheet and one small script are embedded (embed.FS):
// no build step, no CDN. The script (static/refresh.js, the only
// JavaScript) updates the overview's sections every OverviewRefresh
// seconds by fetching the page again, with a button to pause it (a meta
// refresh would reload the page under the operator's keyboard focus and
// cannot be paused: WCAG 2.2.1). The Content-Security-Policy allows only
// the console's own script file, no inline script. Everything works
// without JavaScript; confirmations are server-rendered pages.
//
// Access: an operator signs in with the API token (api.token) or the
// console's own token (api.ui_token), compared in constant time. A
// session lives in memory on the server (SessionTTL at most, IdleTimeout
// without use) behind a random id in a Secure, HttpOnly, SameSite=Strict
// cookie scoped to /ui. Every state-changing form carries the session's
// CSRF token (the sign-in form a pre-session one), and a POST without it is
// answered 403. Sign-in attempts are rate-limited per client address.
// Every answer carries a strict CSP, X-Frame-Options DENY,
// Referrer-Policy no-referrer, X-Content-Type-Options nosniff and
// Cache-Control no-store.
//
// Actions (sign-in, sign-out, re-queue) are logged with who did it: the
// token used ("api_token" or "ui_token") and a short tag of the session,
// never a token or a session id.
//
// Patient data: pages show outbox ids, kinds, local ids of non-patient
// records (a patient's local id is its MRN: never shown), states, error
// classes and the EHR's OperationOutcome, never a payload. The EHR's
// diagnostics may echo submitted values, as in GET /v1/deadletters: they
// are shown to signed-in operators and never logged.
//
// A Sampler, started and stopped by its owner (serve), reads the count of
// delivered records once a minute and keeps the last hour for the chart.
package ui
