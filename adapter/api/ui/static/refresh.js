// ketamine-fhir console: keeps a page current without reloading it. Every
// data-refresh-seconds (on <body>) it fetches the page again and swaps in
// the fresh copy of each element marked data-refresh (by id), so focus and
// scroll stay where the operator left them. The "Pause auto-refresh"
// button stops it (WCAG 2.2.1). Without JavaScript the page is simply
// static. An ended session makes the fetch land on the sign-in page: the
// page is then reloaded, which shows sign-in.
(function () {
  'use strict';
  var secs = parseInt(document.body.getAttribute('data-refresh-seconds'), 10);
  var btn = document.getElementById('refresh-toggle');
  var status = document.getElementById('refresh-status');
  if (!secs || !btn) {
    return;
  }
  var paused = false;
  var timer = null;
  function schedule() {
    timer = setTimeout(tick, secs * 1000);
  }
  function tick() {
    fetch(location.href, { credentials: 'same-origin', headers: { Accept: 'text/html' } })
      .then(function (r) {
        if (r.redirected || !r.ok) {
          location.reload();
          throw new Error('reloading');
        }
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        document.querySelectorAll('[data-refresh]').forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh) {
            el.replaceWith(fresh);
          }
        });
        if (status) {
          status.textContent = 'Updated at ' + new Date().toLocaleTimeString() + '.';
        }
      })
      .catch(function () {})
      .finally(function () {
        if (!paused) {
          schedule();
        }
      });
  }
  btn.hidden = false;
  btn.addEventListener('click', function () {
    paused = !paused;
    btn.setAttribute('aria-pressed', paused ? 'true' : 'false');
    btn.textContent = paused ? 'Resume auto-refresh' : 'Pause auto-refresh';
    if (paused) {
      clearTimeout(timer);
    } else {
      schedule();
    }
  });
  schedule();
})();
