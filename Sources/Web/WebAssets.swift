import Crypto
import Foundation
import HTTPTypes
import Hummingbird

/// The dashboard's static files, compiled in and served by sessiond itself (no CDN, no web fonts).
/// Each carries an ETag (a hash of its bytes); browsers keep them 5 minutes, then ask again.
struct WebAsset: Sendable {
    var path: String
    var contentType: String
    var body: String
    var etag: String

    init(path: String, contentType: String, body: String) {
        self.path = path
        self.contentType = contentType
        self.body = body
        let digest = SHA256.hash(data: Data(body.utf8))
        self.etag = "\"" + digest.prefix(8).map { String(format: "%02x", $0) }.joined() + "\""
    }

    func response(ifNoneMatch: String?) -> Response {
        if ifNoneMatch == etag { return Response(status: .notModified, headers: [.eTag: etag]) }
        return Response(
            status: .ok, headers: [.contentType: contentType, .eTag: etag, .cacheControl: "public, max-age=300", .xContentTypeOptions: "nosniff"],
            body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

enum WebAssets {
    static let all = [
        WebAsset(path: "/assets/app.css", contentType: "text/css; charset=utf-8", body: css),
        WebAsset(path: "/assets/app.js", contentType: "text/javascript; charset=utf-8", body: script),
        WebAsset(path: "/assets/icon.svg", contentType: "image/svg+xml", body: icon),
    ]

    static let icon = """
        <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#0f5132"/>\
        <path d="M8 11h16v12H8z" fill="none" stroke="#fff" stroke-width="2.5" stroke-linejoin="round"/><path d="M8 11l8 5 8-5" fill="none" \
        stroke="#fff" stroke-width="2.5" stroke-linejoin="round"/></svg>
        """

    /// Plain CSS, phone first: nothing is wider than the screen at 390 px.
    static let css = """
        *,*::before,*::after{box-sizing:border-box}
        html{-webkit-text-size-adjust:100%}
        body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;color:#1c2421;background:#f4f6f5;overflow-wrap:anywhere}
        a{color:#0b5e3b}
        .bar{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1rem;padding:.6rem 1rem;background:#0f5132;color:#fff}
        .bar a,.bar .brand{color:#fff;font-weight:700;text-decoration:none}
        .bar .who{flex:1;min-width:0;opacity:.9;font-size:.9rem}
        .bar form{margin:0}
        .bar button{background:transparent;color:#fff;border:1px solid #fff8;border-radius:6px;padding:.3rem .8rem;font:inherit;cursor:pointer}
        main{max-width:980px;margin:0 auto;padding:1rem}
        main.narrow{max-width:28rem}
        h1{font-size:1.5rem;margin:.4rem 0 .6rem}
        h2{font-size:1.15rem;margin:1.4rem 0 .5rem}
        h3{font-size:1rem;margin:1rem 0 .4rem}
        .card{background:#fff;border:1px solid #d7dedb;border-radius:10px;padding:1rem}
        form.card{display:flex;flex-direction:column;gap:.5rem}
        label{font-weight:600}
        input,select,button{font:inherit;max-width:100%}
        input,select{padding:.5rem .6rem;border:1px solid #9fb0a9;border-radius:6px;background:#fff;min-width:0}
        button{padding:.5rem 1rem;border:0;border-radius:6px;background:#0f5132;color:#fff;cursor:pointer}
        button:focus-visible,a:focus-visible,input:focus-visible,select:focus-visible{outline:3px solid #f0b429;outline-offset:2px}
        .error{color:#8a1c1c;background:#fdecec;border-radius:6px;padding:.6rem .8rem}
        .hint,.meta,.empty{color:#52615b;font-size:.92rem}
        .filters{display:flex;flex-wrap:wrap;align-items:center;gap:.4rem .6rem;margin-bottom:1rem}
        .filters input{flex:1 1 10rem}
        .rows{list-style:none;margin:0;padding:0;display:flex;flex-direction:column;gap:.4rem}
        .row{background:#fff;border:1px solid #d7dedb;border-radius:8px;padding:.55rem .75rem;display:flex;flex-wrap:wrap;gap:.25rem .6rem;align-items:baseline}
        .row .name,.row > a{font-weight:600}
        .row .meta{flex-basis:100%}
        .barcode{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-weight:600}
        .pill{display:inline-block;border-radius:999px;padding:0 .55rem;font-size:.85rem;background:#e6ece9}
        .pill.delivered,.pill.completed{background:#d3f0df;color:#0f5132}
        .pill.failed{background:#fadcdc;color:#8a1c1c}
        .pill.picked_up,.pill.active{background:#dbe9fb;color:#1d4f91}
        .pill.paused{background:#fff1c7;color:#6b4e00}
        .pill.archived{background:#e3e3e3;color:#444}
        .reason{color:#8a1c1c;font-size:.9rem}
        .by{color:#52615b;font-size:.9rem}
        .money{color:#33413b}
        .stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(8.5rem,1fr));gap:.4rem;margin:.4rem 0;flex-basis:100%}
        .stats div{background:#fff;border:1px solid #d7dedb;border-radius:8px;padding:.45rem .6rem}
        .row .stats div{border:0;background:#f4f6f5}
        .stats dt{font-size:.8rem;color:#52615b}
        .stats dd{margin:0;font-size:1.15rem;font-weight:700}
        progress{width:100%;height:.9rem;accent-color:#0f5132}
        .live{color:#0f5132;font-weight:600}
        .live.off{color:#8a1c1c}
        .verify{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem;margin:.4rem 0 .8rem}
        .seq{font-family:ui-monospace,monospace;color:#52615b}
        @media (min-width:720px){h1{font-size:1.8rem}}
        """

    /// The few lines of JavaScript: a live page follows its session's event stream and redraws
    /// its figures and rows from the session's JSON (the API's own values); the audit check runs
    /// in place; a page brought back from the back-forward cache after a logout is reloaded.
    static let script = #"""
        "use strict";
        (function () {
          window.addEventListener("pageshow", function (event) { if (event.persisted) { location.reload(); } });

          function reais(cents) {
            var negative = cents < 0, abs = Math.abs(cents), whole = String(Math.floor(abs / 100)), out = "";
            for (var i = 0; i < whole.length; i++) {
              if (i > 0 && (whole.length - i) % 3 === 0) { out += "."; }
              out += whole[i];
            }
            var fraction = abs % 100;
            return (negative ? "-" : "") + "R$\u00a0" + out + "," + (fraction < 10 ? "0" : "") + fraction;
          }
          function percent(value) {
            var text = value === Math.round(value) ? String(value) : value.toFixed(2).replace(".", ",");
            return text + "\u00a0%";
          }
          function percentOf(part, whole) { return whole > 0 ? Math.round(part * 10000 / whole) / 100 : 0; }
          var sessionWords = { open: "Aberta", active: "Em andamento", paused: "Pausada", completed: "Concluída", archived: "Arquivada" };
          var packageWords = { pending: "Pendente", picked_up: "Coletado", delivered: "Entregue", failed: "Falhou" };

          function setFigure(scope, name, value, text) {
            scope.querySelectorAll('[data-field="' + name + '"]').forEach(function (el) {
              if (el.closest("[data-deliverer-id],[data-package-id]") !== (scope.matches && scope.matches("[data-deliverer-id]") ? scope : null)) { return; }
              el.setAttribute("data-value", String(value));
              el.textContent = text;
              if (name === "status") { el.className = "pill " + value; }
            });
          }

          function make(tag, cls, text) {
            var el = document.createElement(tag);
            if (cls) { el.className = cls; }
            if (text !== undefined) { el.textContent = text; }
            return el;
          }
          function statBlock(stats) {
            var dl = make("dl", "stats");
            stats.forEach(function (s) {
              var div = make("div"), dd = make("dd"), fig = make("span", "figure");
              fig.setAttribute("data-field", s[1]);
              div.appendChild(make("dt", null, s[0]));
              dd.appendChild(fig);
              div.appendChild(dd);
              dl.appendChild(div);
            });
            return dl;
          }

          function drawDeliverer(list, d) {
            var row = list.querySelector('[data-deliverer-id="' + CSS.escape(d.deliverer_id) + '"]');
            if (!row) {
              row = make("li", "row");
              row.setAttribute("data-deliverer-id", d.deliverer_id);
              row.appendChild(make("span", "name", d.name || d.deliverer_id));
              row.appendChild(statBlock([["Pacotes", "packages_assigned"], ["Entregues", "packages_delivered"], ["Falhas", "packages_failed"], ["Ganhos", "total_earned_cents"]]));
              list.appendChild(row);
            }
            setFigure(row, "packages_assigned", d.packages_assigned, String(d.packages_assigned));
            setFigure(row, "packages_delivered", d.packages_delivered, String(d.packages_delivered));
            setFigure(row, "packages_failed", d.packages_failed, String(d.packages_failed));
            setFigure(row, "total_earned_cents", d.total_earned_cents, reais(d.total_earned_cents));
          }

          function drawPackage(list, rows, p, names) {
            var row = rows[p.package_id];
            if (!row) {
              row = make("li", "row");
              row.setAttribute("data-package-id", p.package_id);
              list.appendChild(row);
            }
            // What the row shows; redrawn only when that changes (an event may have set the status already).
            var drawn = [p.delivery_status, p.assigned_deliverer_id || "", p.failure_reason || "", p.value_cents].join("|");
            if (row.sessiondDrawn === drawn) { return; }
            row.sessiondDrawn = drawn;
            row.setAttribute("data-status", p.delivery_status);
            row.textContent = "";
            row.appendChild(make("span", "barcode", p.barcode));
            row.appendChild(make("span", "pill " + p.delivery_status, packageWords[p.delivery_status] || p.delivery_status));
            row.appendChild(make("span", "money", reais(p.value_cents)));
            if (p.assigned_deliverer_id) { row.appendChild(make("span", "by", names[p.assigned_deliverer_id] || p.assigned_deliverer_id)); }
            if (p.failure_reason) { row.appendChild(make("span", "reason", p.failure_reason)); }
          }

          // The session-level figures, from the document or from an event's `session` figures.
          function drawFigures(main, s) {
            if (s.status === "completed" || s.status === "archived") { location.reload(); return false; }
            var pending = s.packages_total - s.packages_delivered - s.packages_failed;
            var progress = percentOf(s.packages_delivered + s.packages_failed, s.packages_total);
            setFigure(main, "status", s.status, sessionWords[s.status] || s.status);
            setFigure(main, "packages_total", s.packages_total, String(s.packages_total));
            setFigure(main, "packages_delivered", s.packages_delivered, String(s.packages_delivered));
            setFigure(main, "packages_failed", s.packages_failed, String(s.packages_failed));
            setFigure(main, "packages_pending", pending, String(pending));
            setFigure(main, "progress_percent", progress, percent(progress));
            setFigure(main, "total_revenue_cents", s.total_revenue_cents, reais(s.total_revenue_cents));
            var bar = main.querySelector("progress");
            if (bar) { bar.value = progress; }
            return true;
          }

          function draw(main, s) {
            if (!drawFigures(main, s)) { return; }
            var names = {};
            var deliverers = main.querySelector(".rows.deliverers");
            (s.deliverers || []).forEach(function (d) { names[d.deliverer_id] = d.name || d.deliverer_id; drawDeliverer(deliverers, d); });
            var packages = main.querySelector(".rows.packages");
            var rows = {};
            packages.querySelectorAll("[data-package-id]").forEach(function (row) { rows[row.getAttribute("data-package-id")] = row; });
            (s.packages || []).forEach(function (p) { drawPackage(packages, rows, p, names); });
            main.querySelectorAll(".empty").forEach(function (el) {
              if ((el.nextElementSibling === deliverers && s.deliverers.length) || (el.nextElementSibling === packages && s.packages.length)) { el.remove(); }
            });
          }

          function follow(main) {
            var id = main.getAttribute("data-live-session");
            var state = main.querySelector("[data-live-state]");
            var url = "/api/sessions/" + encodeURIComponent(id);
            var busy = false, again = false, etag = null, shown = 0;
            var marks = { "delivery.package.picked_up": "picked_up", "delivery.package.delivered": "delivered", "delivery.package.failed": "failed" };
            // An event carries the session's figures after the change and the package it touched:
            // drawn at once; the document read that follows fills in the rest (deliverers' figures).
            function apply(event) {
              var data;
              try { data = JSON.parse(event.data); } catch (e) { return; }
              var figures = data && data.session;
              if (!figures || figures.version < shown) { return; }
              shown = figures.version;
              if (!drawFigures(main, figures)) { return; }
              var id = data.details && data.details.package_id, status = marks[event.type];
              var row = id && status && main.querySelector('[data-package-id="' + CSS.escape(id) + '"]');
              if (row && row.getAttribute("data-status") !== status) {
                row.setAttribute("data-status", status);
                var pill = row.querySelector(".pill");
                if (pill) { pill.className = "pill " + status; pill.textContent = packageWords[status]; }
              }
            }
            function refresh() {
              if (busy) { again = true; return; }
              busy = true;
              fetch(url, { credentials: "same-origin", cache: "no-store", headers: etag ? { "If-None-Match": etag } : {} })
                .then(function (response) {
                  if (response.status === 304) { return null; }
                  if (response.status === 401 || response.status === 404) { location.reload(); return null; }
                  if (!response.ok) { throw new Error("HTTP " + response.status); }
                  etag = response.headers.get("ETag");
                  return response.json();
                })
                .then(function (session) {
                  // Never back to an older state than an event already drew.
                  if (session && session.version >= shown) { shown = session.version; draw(main, session); }
                })
                .catch(function () { again = true; })
                .finally(function () {
                  busy = false;
                  if (again) { again = false; setTimeout(refresh, 50); }
                });
            }
            var stream = new EventSource(url + "/events");
            // The stream is open before the state is read again: nothing between the page's
            // render and the subscription is missed.
            stream.addEventListener("open", function () {
              if (state) { state.textContent = "ao vivo"; state.className = "live"; }
              refresh();
            });
            stream.addEventListener("error", function () {
              if (state) { state.textContent = "reconectando…"; state.className = "live off"; }
            });
            (main.getAttribute("data-event-types") || "").split(" ").forEach(function (type) {
              if (type) { stream.addEventListener(type, function (event) { apply(event); refresh(); }); }
            });
            stream.addEventListener("message", refresh);
          }

          function verify(form) {
            var button = form.querySelector('[data-action="verify-audit"]');
            var out = form.querySelector(".verification");
            button.addEventListener("click", function (event) {
              event.preventDefault();
              out.textContent = "verificando…";
              fetch("/api/sessions/" + encodeURIComponent(form.getAttribute("data-session")) + "/audit/verify", { credentials: "same-origin", cache: "no-store" })
                .then(function (response) { if (!response.ok) { throw new Error("HTTP " + response.status); } return response.json(); })
                .then(function (result) {
                  out.textContent = "";
                  var valid = make("span", "figure", result.valid ? "Trilha íntegra" : "Trilha adulterada");
                  valid.setAttribute("data-field", "audit_valid");
                  valid.setAttribute("data-value", result.valid ? "true" : "false");
                  var entries = make("span", "figure", result.entries + " registros");
                  entries.setAttribute("data-field", "audit_entries");
                  entries.setAttribute("data-value", String(result.entries));
                  out.appendChild(valid);
                  out.appendChild(document.createTextNode(" · "));
                  out.appendChild(entries);
                  if (result.first_bad_seq !== null && result.first_bad_seq !== undefined) {
                    out.appendChild(document.createTextNode(" · primeiro registro alterado: " + result.first_bad_seq));
                  }
                })
                .catch(function () { out.textContent = "não foi possível verificar agora"; });
            });
          }

          document.addEventListener("DOMContentLoaded", function () {
            var main = document.querySelector("main[data-live-session]");
            if (main) { follow(main); }
            var form = document.querySelector("form.verify");
            if (form) { verify(form); }
          });
        })();
        """#
}
