/* The zasync jobs dashboard: keeps the page up to date without a reload.
 *
 * Each page marks what it shows with data attributes; this script polls
 * the page's JSON view (data-json-url) every data-poll milliseconds and
 * updates counts, statuses and progress bars in place. Everything from a
 * job is written with textContent, never as markup. Without JavaScript the
 * pages work the same, only without updating themselves.
 */
(function () {
  "use strict";
  if (!window.fetch || !document.querySelector) { return; }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function getJSON(url) {
    return fetch(url, {credentials: "same-origin", cache: "no-store",
                       headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      });
  }

  function poll(url, every, apply) {
    function round() {
      getJSON(typeof url === "function" ? url() : url)
        .then(function (data) {
          if (apply(data) !== false) { window.setTimeout(round, every); }
        })
        .catch(function () { window.setTimeout(round, every * 5); });
    }
    window.setTimeout(round, every);
  }

  /* The progress widget of a job: a Bootstrap progress bar and message. */
  function renderProgress(box, progress) {
    if (!box) { return; }
    while (box.firstChild) { box.removeChild(box.firstChild); }
    if (!progress) { return; }
    var bar = el("div", "progress");
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuenow", progress.percent);
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    var fill = el("div", "progress-bar", progress.percent + "%");
    fill.style.width = progress.percent + "%";
    bar.appendChild(fill);
    box.appendChild(bar);
    if (progress.message) {
      box.appendChild(el("small", "text-muted zasync-progress-message", progress.message));
    }
  }

  function setBadge(badge, status, label, css) {
    if (!badge || badge.getAttribute("data-status") === status) { return; }
    badge.setAttribute("data-status", status);
    badge.className = badge.className.replace(/\btext-bg-\S+/g, "").trim() + " " + css;
    badge.textContent = label;
  }

  /* The overview: counts, throughput and dispatchers' threads. */
  var overview = document.getElementById("zasync-jobs-overview");
  if (overview) {
    poll(overview.getAttribute("data-json-url"),
         parseInt(overview.getAttribute("data-poll"), 10) || 2000,
         function (data) {
           var time = document.getElementById("zasync-jobs-time");
           if (time) { time.textContent = data.time.replace("T", " ").slice(0, 19); }
           data.queues.forEach(function (queue) {
             var section = null;
             overview.querySelectorAll(".zasync-queue").forEach(function (node) {
               if (node.getAttribute("data-queue") === queue.label) { section = node; }
             });
             if (!section) { return; }
             Object.keys(queue.counts).forEach(function (status) {
               var cell = section.querySelector('[data-count="' + status + '"]');
               if (cell) { cell.textContent = queue.counts[status]; }
             });
             ["total", "succeeded", "failed"].forEach(function (name) {
               var cell = section.querySelector('[data-throughput="' + name + '"]');
               if (cell) { cell.textContent = queue.throughput[name]; }
             });
             queue.dispatchers.forEach(function (d) {
               var row = null;
               section.querySelectorAll("tr[data-uuid]").forEach(function (node) {
                 if (node.getAttribute("data-uuid") === d.uuid) { row = node; }
               });
               if (!row) { return; }
               row.querySelector('[data-threads="busy"]').textContent = d.threads_busy;
               row.querySelector('[data-threads="idle"]').textContent = d.threads_idle;
               d.jobs.forEach(function (job) {
                 var holder = row.querySelector('[data-job-id="' + job.id + '"]');
                 if (holder) { renderProgress(holder.querySelector(".zasync-progress"), job.progress); }
               });
             });
           });
         });
  }

  /* The list: statuses, progress and errors of the rows shown. */
  var list = document.getElementById("zasync-jobs-list");
  if (list) {
    var pending = function () {
      var ids = [];
      list.querySelectorAll("tbody tr[data-job-id]").forEach(function (row) {
        if (row.getAttribute("data-done") !== "true") { ids.push(row.getAttribute("data-job-id")); }
      });
      return ids;
    };
    if (pending().length) {
      poll(function () {
        return list.getAttribute("data-json-url") + "?ids=" + encodeURIComponent(pending().join(","));
      }, parseInt(list.getAttribute("data-poll"), 10) || 2000, function (data) {
        data.jobs.forEach(function (job) {
          var row = list.querySelector('tr[data-job-id="' + job.id + '"]');
          if (!row) { return; }
          setBadge(row.querySelector(".badge[data-status]"), job.status, job.label, job.badge);
          renderProgress(row.querySelector(".zasync-progress"), job.progress);
          if (job.error && !row.querySelector(".zasync-error")) {
            row.querySelector(".zasync-progress").parentNode.appendChild(
              el("span", "text-danger small zasync-error", job.error));
          }
          if (job.done) { row.setAttribute("data-done", "true"); }
        });
        return pending().length > 0;
      });
    }
  }

  /* One job: status, progress, live annotations, times; reload once done,
     so that the result and the buttons are those of the finished job. */
  var detail = document.getElementById("zasync-job");
  if (detail && detail.getAttribute("data-done") !== "true") {
    poll(detail.getAttribute("data-json-url"),
         parseInt(detail.getAttribute("data-poll"), 10) || 1000,
         function (job) {
           setBadge(document.getElementById("zasync-job-status"), job.status, job.label, job.badge);
           renderProgress(detail.querySelector("#zasync-job-progress .zasync-progress"), job.progress);
           var live = document.getElementById("zasync-job-live");
           if (live) {
             while (live.firstChild) { live.removeChild(live.firstChild); }
             Object.keys(job.live_annotations).sort().forEach(function (name) {
               var dt = el("dt", "col-sm-3");
               dt.appendChild(el("code", null, name));
               var dd = el("dd", "col-sm-9");
               dd.appendChild(el("code", "text-break", job.live_annotations[name]));
               live.appendChild(dt);
               live.appendChild(dd);
             });
           }
           var attempts = document.getElementById("zasync-job-attempts");
           if (attempts) { attempts.textContent = job.attempts; }
           if (job.done) {
             window.location.reload();
             return false;
           }
           return true;
         });
  }
})();
