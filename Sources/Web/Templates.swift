/// The dashboard's Mustache templates, compiled into the binary (one file to deploy, nothing to
/// find at run time). `{{x}}` escapes HTML; nothing here is inline script or style (the CSP
/// forbids both): the looks are `/assets/app.css`, the live updates `/assets/app.js`.
enum Templates {
    static let all: [(String, String)] = [
        ("head", head), ("foot", foot), ("figure", figure), ("stats", stats), ("deliverer", deliverer), ("package", package),
        ("login", login), ("error", error), ("sessions", sessions), ("live", live), ("history", history),
    ]

    static let head = """
        <!doctype html>
        <html lang="pt-BR">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}} · sessiond</title>
        <link rel="icon" href="/assets/icon.svg" type="image/svg+xml">
        <link rel="stylesheet" href="/assets/app.css">
        <script src="/assets/app.js" defer></script>
        </head>
        <body>
        <header class="bar">
        {{#user}}<a class="brand" href="/">sessiond</a>
        <span class="who">{{userID}}{{#readOnly}} · só leitura{{/readOnly}}</span>
        <form method="post" action="/auth/logout" class="logout"><button type="submit" data-action="logout">Sair</button></form>{{/user}}
        {{^user}}<span class="brand">sessiond</span>{{/user}}
        </header>

        """

    static let foot = """

        </body>
        </html>

        """

    static let figure = #"<span class="figure" data-field="{{name}}" data-value="{{value}}">{{text}}</span>"#

    static let stats = """
        <dl class="stats">{{#stats}}<div><dt>{{label}}</dt><dd>{{#figure}}{{> figure}}{{/figure}}</dd></div>{{/stats}}</dl>
        """

    static let deliverer = """
        <li class="row" data-deliverer-id="{{id}}"><span class="name">{{name}}</span>{{> stats}}</li>
        """

    static let package = """
        <li class="row" data-package-id="{{id}}" data-status="{{status}}"><span class="barcode">{{barcode}}</span> \
        <span class="pill {{status}}">{{statusText}}</span> <span class="money">{{value}}</span>\
        {{#deliverer}} <span class="by">{{deliverer}}</span>{{/deliverer}}{{#reason}} <span class="reason">{{reason}}</span>{{/reason}}</li>
        """

    static let login = """
        {{> head}}<main class="narrow">
        <h1>Entrar no painel</h1>
        {{#error}}<p class="error" role="alert">{{error}}</p>{{/error}}
        <form data-form="login" method="post" action="/auth/login" class="card">
        <label for="api_key">Chave de API</label>
        <input id="api_key" name="api_key" type="password" autocomplete="current-password" spellcheck="false" required>
        {{#next}}<input type="hidden" name="next" value="{{next}}">{{/next}}
        <button type="submit">Entrar</button>
        </form>
        <p class="hint">Use a chave de um dono ou de um leitor, ou abra o link de acesso que o sessiond gerou para você.</p>
        </main>{{> foot}}
        """

    static let error = """
        {{> head}}<main class="narrow">
        <h1>{{title}}</h1>
        <p class="error" role="alert">{{message}}</p>
        <p>{{#user}}<a href="/">Voltar às minhas sessões</a>{{/user}}{{^user}}<a href="/login">Entrar</a>{{/user}}</p>
        </main>{{> foot}}
        """

    static let sessions = """
        {{> head}}<main>
        <h1>Minhas sessões</h1>
        <form method="get" action="/" class="filters" role="search">
        <label for="status">Situação</label>
        <select id="status" name="status">{{#statuses}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{label}}</option>{{/statuses}}</select>
        <label for="barcode">Código de barras</label>
        <input id="barcode" name="barcode" type="search" value="{{barcode}}" inputmode="search" spellcheck="false">
        <button type="submit">Filtrar</button>
        {{#filtered}}<a href="/">Limpar</a>{{/filtered}}
        </form>
        {{#empty}}<p class="empty">Nenhuma sessão{{#filtered}} com esse filtro{{/filtered}}.</p>{{/empty}}
        <ul class="rows sessions">
        {{#sessions}}<li class="row" data-session-id="{{id}}" data-status="{{status}}">
        <a href="/sessions/{{id}}">{{name}}</a> <span class="pill {{status}}">{{statusText}}</span>
        <span class="meta">{{created}} · {{#delivered}}{{> figure}}{{/delivered}} de {{#total}}{{> figure}}{{/total}} entregues · {{#revenue}}{{> figure}}{{/revenue}}</span>
        </li>
        {{/sessions}}</ul>
        {{#nextURL}}<p><a href="{{nextURL}}" rel="next">Sessões mais antigas</a></p>{{/nextURL}}
        </main>{{> foot}}
        """

    static let live = """
        {{> head}}<main data-live-session="{{id}}" data-event-types="{{eventTypes}}">
        <h1>{{name}}</h1>
        <p class="meta">{{#statusFigure}}<span class="pill {{value}}" data-field="{{name}}" data-value="{{value}}">{{text}}</span>{{/statusFigure}} · criada em {{created}} · <span class="live" data-live-state aria-live="polite">ao vivo</span></p>
        {{> stats}}
        <progress max="100" value="{{progress}}" aria-label="Progresso das entregas">{{progress}} %</progress>
        <h2>Entregadores</h2>
        {{#noDeliverers}}<p class="empty">Ninguém ainda: os entregadores entram quando a sessão começa.</p>{{/noDeliverers}}
        <ul class="rows deliverers">{{#deliverers}}{{> deliverer}}{{/deliverers}}</ul>
        <h2>Pacotes</h2>
        {{#noPackages}}<p class="empty">Nenhum pacote ainda.</p>{{/noPackages}}
        <ul class="rows packages">{{#packages}}{{> package}}{{/packages}}</ul>
        </main>{{> foot}}
        """

    static let history = """
        {{> head}}<main>
        <h1>{{name}}</h1>
        <p class="meta">{{#statusFigure}}<span class="pill {{value}}" data-field="{{name}}" data-value="{{value}}">{{text}}</span>{{/statusFigure}} · criada em {{created}}</p>
        <p><a data-action="export-csv" href="/sessions/{{id}}/export.csv" download>Exportar pacotes (CSV)</a></p>
        {{#snapshot}}<section data-snapshot class="card" aria-labelledby="snapshot-title">
        <h2 id="snapshot-title">Fechamento ({{completed}})</h2>
        {{> stats}}
        <h3>Entregadores</h3>
        <ul class="rows deliverers">{{#deliverers}}{{> deliverer}}{{/deliverers}}</ul>
        </section>{{/snapshot}}
        <h2>Pacotes</h2>
        {{#noPackages}}<p class="empty">Nenhum pacote.</p>{{/noPackages}}
        <ul class="rows packages">{{#packages}}{{> package}}{{/packages}}</ul>
        <h2 id="trilha">Trilha de auditoria</h2>
        <form method="get" action="/sessions/{{id}}#trilha" class="verify" data-session="{{id}}">
        <input type="hidden" name="verify" value="1">
        <button type="submit" data-action="verify-audit">Verificar a trilha</button>
        <span class="verification" aria-live="polite">{{#verification}}{{#valid}}{{> figure}}{{/valid}} · {{#entries}}{{> figure}}{{/entries}}{{#firstBadSeq}} · primeiro registro alterado: {{firstBadSeq}}{{/firstBadSeq}}{{/verification}}</span>
        </form>
        <ol class="rows audit">{{#audit}}<li class="row" data-audit-seq="{{seq}}" data-audit-action="{{action}}"><span class="seq">{{seq}}</span> {{label}} <time datetime="{{datetime}}">{{time}}</time>{{#actor}} <span class="by">{{actor}}</span>{{/actor}}</li>{{/audit}}</ol>
        </main>{{> foot}}
        """
}
