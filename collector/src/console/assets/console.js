// aiscout console: progressive enhancement only. Every page works without this script;
// it adds select-all, keyboard shortcuts in the review queue and an upload progress bar.
// Served from the collector itself ('self' in the CSP); no inline script anywhere.
'use strict';

document.addEventListener('DOMContentLoaded', function () {
  // Select every product on the page.
  var all = document.getElementById('select-all');
  if (all) {
    all.addEventListener('change', function () {
      document.querySelectorAll('table.queue tbody input[type=checkbox]').forEach(function (box) {
        box.checked = all.checked;
      });
    });
  }

  // Review queue: j/k move between rows, x ticks, s/u/b choose the decision and go to the note.
  var queue = document.querySelector('table.queue tbody');
  if (queue) {
    var rows = Array.prototype.slice.call(queue.querySelectorAll('tr'));
    var at = -1;
    var focusRow = function (i) {
      if (rows.length === 0) return;
      at = Math.max(0, Math.min(rows.length - 1, i));
      rows.forEach(function (r) { r.classList.remove('current'); });
      rows[at].classList.add('current');
      var box = rows[at].querySelector('input[type=checkbox]');
      if (box) box.focus();
    };
    var pick = function (status) {
      var radio = document.querySelector('fieldset.bulk input[value="' + status + '"]');
      if (radio) radio.checked = true;
      var note = document.getElementById('bulk-note');
      if (note) note.focus();
    };
    document.addEventListener('keydown', function (e) {
      var t = e.target;
      if (e.altKey || e.ctrlKey || e.metaKey) return;
      if (t && (t.tagName === 'TEXTAREA' || (t.tagName === 'INPUT' && t.type !== 'checkbox' && t.type !== 'radio'))) return;
      var rowOf = function (el) { return rows.indexOf(el && el.closest ? el.closest('tr') : null); };
      if (e.key === 'j') { e.preventDefault(); focusRow(rowOf(t) >= 0 ? rowOf(t) + 1 : at + 1); }
      else if (e.key === 'k') { e.preventDefault(); focusRow(rowOf(t) >= 0 ? rowOf(t) - 1 : at - 1); }
      else if (e.key === 'x') {
        var i = rowOf(t) >= 0 ? rowOf(t) : at;
        if (i >= 0) { e.preventDefault(); var b = rows[i].querySelector('input[type=checkbox]'); if (b) b.checked = !b.checked; }
      }
      else if (e.key === 's') { e.preventDefault(); pick('sanctioned'); }
      else if (e.key === 'u') { e.preventDefault(); pick('unsanctioned'); }
      else if (e.key === 'b') { e.preventDefault(); pick('blocked'); }
    });
  }

  // Upload with a progress bar: the same multipart form, sent with XMLHttpRequest so that the
  // browser reports upload progress; the answer's main content replaces this page's.
  var upload = document.getElementById('upload');
  if (upload && window.XMLHttpRequest && window.FormData && window.DOMParser) {
    upload.addEventListener('submit', function (e) {
      var file = document.getElementById('file');
      var max = parseInt(upload.getAttribute('data-max') || '0', 10);
      var status = document.getElementById('upload-status');
      var bar = document.getElementById('upload-progress');
      var box = upload.querySelector('.progress');
      if (file && file.files && file.files[0] && max > 0 && file.files[0].size > max) {
        e.preventDefault();
        if (box) box.hidden = false;
        if (status) status.textContent = 'This file is larger than the ' + Math.floor(max / 1048576) + ' MiB limit; nothing was sent.';
        return;
      }
      e.preventDefault();
      var xhr = new XMLHttpRequest();
      xhr.open('POST', upload.action);
      if (box) box.hidden = false;
      xhr.upload.addEventListener('progress', function (p) {
        if (!p.lengthComputable) return;
        var pct = Math.round(100 * p.loaded / p.total);
        if (bar) { bar.value = pct; bar.textContent = pct + ' %'; }
        if (status) status.textContent = pct < 100 ? 'Uploading: ' + pct + ' %' : 'Importing…';
      });
      xhr.addEventListener('load', function () {
        var doc = new DOMParser().parseFromString(xhr.responseText, 'text/html');
        var fresh = doc.querySelector('main');
        var here = document.querySelector('main');
        if (fresh && here) {
          here.replaceWith(document.importNode(fresh, true));
          var result = document.getElementById('result');
          if (result) { result.setAttribute('tabindex', '-1'); result.focus(); }
          // The new form needs the same behaviour.
          document.dispatchEvent(new Event('DOMContentLoaded'));
        } else if (status) {
          status.textContent = 'The collector answered ' + xhr.status + '.';
        }
      });
      xhr.addEventListener('error', function () {
        if (status) status.textContent = 'The upload failed: the collector could not be reached.';
      });
      xhr.send(new FormData(upload));
    });
  }
});
