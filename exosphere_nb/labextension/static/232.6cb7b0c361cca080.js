"use strict";(self.rspackChunkexosphere_nb=self.rspackChunkexosphere_nb||[]).push([[232],{475(o,e,r){var a=r(601),t=r.n(a),n=r(314),i=(r.n(n))()(t());i.push([o.id,`/* exosphere-nb panel and run views: JupyterLab's theme variables only, so light and dark both work */

.exo-panel,
.exo-run-view {
  --exo-success: var(--jp-success-color1);
  --exo-failed: var(--jp-error-color1);
  --exo-running: var(--jp-info-color1);
  --exo-pending: var(--jp-warn-color1);

  /* tints of the status colour over the theme's background: light on light themes, dark on dark */
  --exo-success-bg: color-mix(in srgb, var(--exo-success) 22%, var(--jp-layout-color1));
  --exo-failed-bg: color-mix(in srgb, var(--exo-failed) 22%, var(--jp-layout-color1));
  --exo-running-bg: color-mix(in srgb, var(--exo-running) 22%, var(--jp-layout-color1));
  --exo-pending-bg: color-mix(in srgb, var(--exo-pending) 22%, var(--jp-layout-color1));
  --exo-muted: var(--jp-ui-font-color2);

  color: var(--jp-ui-font-color1);
  background: var(--jp-layout-color1);
  font-family: var(--jp-ui-font-family);
  font-size: var(--jp-ui-font-size1);
  overflow: auto;
}

.exo-panel {
  padding: 6px 8px;
  min-width: 260px;
}

.exo-header {
  display: flex;
  align-items: center;
  gap: 8px;
  padding-bottom: 6px;
  border-bottom: 1px solid var(--jp-border-color2);
}

.exo-title {
  font-size: var(--jp-ui-font-size2);
  font-weight: 600;
  flex: 1;
}

.exo-auto {
  display: flex;
  align-items: center;
  gap: 2px;
  color: var(--exo-muted);
}

.exo-section {
  margin-top: 8px;
}

.exo-section-title {
  font-weight: 600;
  text-transform: uppercase;
  font-size: var(--jp-ui-font-size0);
  letter-spacing: 0.05em;
  color: var(--exo-muted);
  margin-bottom: 4px;
  cursor: default;
}

details > summary.exo-section-title {
  cursor: pointer;
}

.exo-row {
  display: flex;
  align-items: center;
  gap: 4px;
  margin: 3px 0;
  flex-wrap: wrap;
}

.exo-label {
  font-weight: 600;
  margin: 6px 4px 2px 0;
}

.exo-muted {
  color: var(--exo-muted);
}

.exo-mono,
.exo-value,
.exo-traceback {
  font-family: var(--jp-code-font-family);
  font-size: var(--jp-code-font-size);
}

.exo-select,
.exo-input {
  background: var(--jp-input-background, var(--jp-layout-color1));
  color: var(--jp-ui-font-color1);
  border: 1px solid var(--jp-border-color1);
  border-radius: 2px;
  padding: 2px 4px;
  font-size: var(--jp-ui-font-size1);
  min-width: 0;
}

.exo-connection-select {
  flex: 1;
}

.exo-button {
  background: var(--jp-layout-color2);
  color: var(--jp-ui-font-color1);
  border: 1px solid var(--jp-border-color1);
  border-radius: 2px;
  padding: 2px 8px;
  cursor: pointer;
  font-size: var(--jp-ui-font-size1);
}

.exo-button:hover:not([disabled]) {
  background: var(--jp-layout-color3);
}

.exo-button[disabled] {
  opacity: 0.5;
  cursor: default;
}

.exo-primary {
  background: var(--jp-brand-color1);
  border-color: var(--jp-brand-color1);
  color: var(--jp-ui-inverse-font-color1);
}

.exo-primary:hover:not([disabled]) {
  background: var(--jp-brand-color0);
}

.exo-danger {
  color: var(--exo-failed);
  border-color: var(--exo-failed);
}

.exo-link {
  background: none;
  border: none;
  color: var(--jp-content-link-color);
  cursor: pointer;
  padding: 0 6px 0 0;
  font-family: var(--jp-code-font-family);
}

.exo-form {
  display: flex;
  flex-direction: column;
  gap: 4px;
  padding: 6px;
  margin: 4px 0;
  border: 1px solid var(--jp-border-color2);
  border-radius: 3px;
  background: var(--jp-layout-color2);
}

.exo-form-title {
  font-weight: 600;
}

.exo-kv {
  display: flex;
  gap: 4px;
  align-items: center;
}

.exo-kv > .exo-input {
  flex: 1;
}

.exo-kv-key {
  min-width: 6em;
  font-family: var(--jp-code-font-family);
}

.exo-error {
  color: var(--exo-failed);
  background: var(--exo-failed-bg);
  border-left: 3px solid var(--exo-failed);
  padding: 4px 6px;
  margin: 4px 0;
  white-space: pre-wrap;
  word-break: break-word;
}

.exo-error ul {
  margin: 2px 0 0;
  padding-left: 16px;
}

.exo-ok {
  color: var(--exo-success);
  padding: 2px 0;
}

.exo-badge {
  display: inline-block;
  padding: 0 5px;
  border-radius: 8px;
  font-size: var(--jp-ui-font-size0);
  font-weight: 600;
  border: 1px solid var(--jp-border-color1);
  white-space: nowrap;
}

.exo-status-success,
.exo-validation-valid {
  color: var(--exo-success);
  background: var(--exo-success-bg);
  border-color: var(--exo-success);
}

.exo-status-failed,
.exo-status-errored,
.exo-status-next_created_error,
.exo-validation-invalid {
  color: var(--exo-failed);
  background: var(--exo-failed-bg);
  border-color: var(--exo-failed);
}

.exo-status-pending,
.exo-status-queued,
.exo-status-executed,
.exo-validation-pending {
  color: var(--exo-running);
  background: var(--exo-running-bg);
  border-color: var(--exo-running);
}

.exo-status-created,
.exo-status-retry_created {
  color: var(--exo-pending);
  background: var(--exo-pending-bg);
  border-color: var(--exo-pending);
}

.exo-status-cancelled,
.exo-status-pruned {
  color: var(--exo-muted);
  background: var(--jp-layout-color2);
}

.exo-graph {
  border-bottom: 1px solid var(--jp-border-color3);
  padding: 2px 0;
}

.exo-graph-summary {
  display: flex;
  align-items: center;
  gap: 6px;
  cursor: pointer;
}

.exo-graph-name {
  flex: 1;
  font-weight: 600;
}

.exo-validation-errors {
  color: var(--exo-failed);
  margin: 2px 0 4px;
  padding-left: 18px;
}

.exo-node {
  padding: 2px 0;
}

.exo-node-name {
  font-weight: 600;
}

.exo-filters {
  display: flex;
  flex-wrap: wrap;
  gap: 4px;
  margin: 4px 0;
}

.exo-table {
  width: 100%;
  border-collapse: collapse;
}

.exo-table th,
.exo-table td {
  text-align: left;
  padding: 3px 4px;
  border-bottom: 1px solid var(--jp-border-color3);
  vertical-align: top;
}

.exo-table thead th {
  color: var(--exo-muted);
  font-weight: 600;
}

.exo-run-row,
.exo-state-row {
  cursor: pointer;
}

.exo-run-row:hover,
.exo-state-row:hover,
.exo-state-row.exo-selected {
  background: var(--jp-layout-color2);
}

.exo-state-row.exo-selected {
  outline: 1px solid var(--jp-brand-color1);
}

.exo-run-id {
  font-family: var(--jp-code-font-family);
  font-size: var(--jp-ui-font-size0);
}

.exo-progress {
  display: flex;
  width: 70px;
  height: 6px;
  border-radius: 3px;
  background: var(--jp-layout-color3);
  overflow: hidden;
  margin-top: 4px;
}

.exo-progress-ok {
  background: var(--exo-success);
}

.exo-progress-bad {
  background: var(--exo-failed);
}

.exo-pager {
  display: flex;
  align-items: center;
  justify-content: center;
  gap: 8px;
  margin: 4px 0;
}

/* -- run view ------------------------------------------------------------------------------- */

.exo-run-view {
  padding: 8px 12px;
}

.exo-run-head {
  display: flex;
  flex-direction: column;
  gap: 4px;
  padding-bottom: 6px;
  border-bottom: 1px solid var(--jp-border-color2);
}

.exo-run-title {
  display: flex;
  align-items: center;
  gap: 8px;
}

.exo-run-graph-name {
  font-size: var(--jp-ui-font-size3);
  font-weight: 600;
}

.exo-run-counts {
  flex: 1;
}

.exo-count-success {
  color: var(--exo-success);
}

.exo-count-failed {
  color: var(--exo-failed);
}

.exo-count-running {
  color: var(--exo-running);
}

.exo-count-pending,
.exo-count-retried {
  color: var(--exo-pending);
}

.exo-count-pruned,
.exo-count-cancelled {
  color: var(--exo-muted);
}

.exo-dag-host {
  overflow: auto;
  padding: 8px 0;
  text-align: center;
}

.exo-dag-small svg {
  max-width: 100%;
  height: auto;
}

.exo-dag .exo-dag-box {
  fill: var(--jp-layout-color1);
  stroke: var(--jp-border-color1);
  stroke-width: 1.2;
}

.exo-dag .exo-cat-success .exo-dag-box {
  fill: var(--exo-success-bg);
}

.exo-dag .exo-cat-failed .exo-dag-box {
  fill: var(--exo-failed-bg);
}

.exo-dag .exo-cat-running .exo-dag-box {
  fill: var(--exo-running-bg);
}

.exo-dag .exo-cat-pending .exo-dag-box,
.exo-dag .exo-cat-retried .exo-dag-box {
  fill: var(--exo-pending-bg);
}

.exo-dag .exo-cat-pruned .exo-dag-box,
.exo-dag .exo-cat-cancelled .exo-dag-box {
  fill: var(--jp-layout-color2);
}

.exo-dag .exo-dag-node-alert .exo-dag-box {
  stroke: var(--exo-failed);
  stroke-width: 2;
}

.exo-dag .exo-dag-node-selected .exo-dag-box {
  stroke: var(--jp-brand-color1);
  stroke-width: 3;
}

.exo-dag .exo-dag-node {
  cursor: pointer;
}

.exo-dag .exo-dag-node:focus {
  outline: none;
}

.exo-dag .exo-dag-node:focus .exo-dag-box {
  stroke: var(--jp-brand-color1);
}

.exo-dag text {
  fill: var(--jp-ui-font-color1);
  font-family: var(--jp-ui-font-family);
  font-size: 12px;
}

.exo-dag .exo-dag-id {
  font-weight: 600;
}

.exo-dag .exo-dag-name,
.exo-dag .exo-count-none {
  fill: var(--exo-muted);
  font-size: 11px;
}

.exo-dag .exo-count-success {
  fill: var(--exo-success);
}

.exo-dag .exo-count-failed {
  fill: var(--exo-failed);
}

.exo-dag .exo-count-running {
  fill: var(--exo-running);
}

.exo-dag .exo-count-pending,
.exo-dag .exo-count-retried {
  fill: var(--exo-pending);
}

.exo-dag .exo-count-pruned,
.exo-dag .exo-count-cancelled {
  fill: var(--exo-muted);
}

.exo-dag .exo-dag-counts {
  font-weight: 600;
}

.exo-dag .exo-dag-edge {
  fill: none;
  stroke: var(--jp-ui-font-color2);
  stroke-width: 1.4;
}

.exo-dag .exo-dag-unites {
  stroke-dasharray: 5 4;
}

.exo-dag .exo-dag-arrow {
  fill: var(--jp-ui-font-color2);
}

.exo-run-lower {
  display: grid;
  grid-template-columns: minmax(260px, 1fr) minmax(280px, 1.2fr);
  gap: 12px;
  border-top: 1px solid var(--jp-border-color2);
  padding-top: 6px;
}

.exo-states-head {
  display: flex;
  align-items: center;
  gap: 6px;
  flex-wrap: wrap;
}

.exo-state-error {
  color: var(--exo-failed);
  max-width: 260px;
  overflow: hidden;
  text-overflow: ellipsis;
  white-space: nowrap;
}

.exo-inspector {
  border-left: 1px solid var(--jp-border-color2);
  padding-left: 12px;
  min-width: 0;
}

.exo-inspector-head {
  display: flex;
  align-items: center;
  gap: 8px;
}

.exo-inspector-title {
  font-weight: 600;
  flex: 1;
}

.exo-kv-table th {
  width: 8em;
  font-family: var(--jp-code-font-family);
  font-weight: normal;
  color: var(--exo-muted);
}

.exo-value {
  margin: 0;
  white-space: pre-wrap;
  word-break: break-word;
}

.exo-traceback {
  margin: 0;
  padding: 6px;
  white-space: pre-wrap;
  word-break: break-word;
  color: var(--exo-failed);
  background: var(--jp-cell-editor-background, var(--jp-layout-color2));
  border-left: 3px solid var(--exo-failed);
  max-height: 320px;
  overflow: auto;
}

.exo-form[hidden] {
  display: none;
}

.exo-states-head .exo-select {
  width: auto;
}

.exo-connection-info {
  word-break: break-all;
}
`,""]),r.d(e,{},{A:i})},314(o){o.exports=function(o){var e=[];return e.toString=function(){return this.map(function(e){var r="",a=void 0!==e[5];return e[4]&&(r+="@supports (".concat(e[4],") {")),e[2]&&(r+="@media ".concat(e[2]," {")),a&&(r+="@layer".concat(e[5].length>0?" ".concat(e[5]):""," {")),r+=o(e),a&&(r+="}"),e[2]&&(r+="}"),e[4]&&(r+="}"),r}).join("")},e.i=function(o,r,a,t,n){"string"==typeof o&&(o=[[null,o,void 0]]);var i={};if(a)for(var d=0;d<this.length;d++){var l=this[d][0];null!=l&&(i[l]=!0)}for(var x=0;x<o.length;x++){var c=[].concat(o[x]);a&&i[c[0]]||(void 0!==n&&(void 0===c[5]||(c[1]="@layer".concat(c[5].length>0?" ".concat(c[5]):""," {").concat(c[1],"}")),c[5]=n),r&&(c[2]&&(c[1]="@media ".concat(c[2]," {").concat(c[1],"}")),c[2]=r),t&&(c[4]?(c[1]="@supports (".concat(c[4],") {").concat(c[1],"}"),c[4]=t):c[4]="".concat(t)),e.push(c))}},e}},601(o){o.exports=function(o){return o[1]}},72(o){var e=[];function r(o){for(var r=-1,a=0;a<e.length;a++)if(e[a].identifier===o){r=a;break}return r}function a(o,a){for(var t={},n=[],i=0;i<o.length;i++){var d=o[i],l=a.base?d[0]+a.base:d[0],x=t[l]||0,c="".concat(l," ").concat(x);t[l]=x+1;var p=r(c),s={css:d[1],media:d[2],sourceMap:d[3],supports:d[4],layer:d[5]};if(-1!==p)e[p].references++,e[p].updater(s);else{var u=function(o,e){var r=e.domAPI(e);return r.update(o),function(e){e?(e.css!==o.css||e.media!==o.media||e.sourceMap!==o.sourceMap||e.supports!==o.supports||e.layer!==o.layer)&&r.update(o=e):r.remove()}}(s,a);a.byIndex=i,e.splice(i,0,{identifier:c,updater:u,references:1})}n.push(c)}return n}o.exports=function(o,t){var n=a(o=o||[],t=t||{});return function(o){o=o||[];for(var i=0;i<n.length;i++){var d=r(n[i]);e[d].references--}for(var l=a(o,t),x=0;x<n.length;x++){var c=r(n[x]);0===e[c].references&&(e[c].updater(),e.splice(c,1))}n=l}}},659(o){var e={};o.exports=function(o,r){var a=function(o){if(void 0===e[o]){var r=document.querySelector(o);if(window.HTMLIFrameElement&&r instanceof window.HTMLIFrameElement)try{r=r.contentDocument.head}catch(o){r=null}e[o]=r}return e[o]}(o);if(!a)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");a.appendChild(r)}},540(o){o.exports=function(o){var e=document.createElement("style");return o.setAttributes(e,o.attributes),o.insert(e,o.options),e}},56(o,e,r){o.exports=function(o){var e=r.nc;e&&o.setAttribute("nonce",e)}},825(o){o.exports=function(o){if("u"<typeof document)return{update:function(){},remove:function(){}};var e=o.insertStyleElement(o);return{update:function(r){var a,t,n;a="",r.supports&&(a+="@supports (".concat(r.supports,") {")),r.media&&(a+="@media ".concat(r.media," {")),(t=void 0!==r.layer)&&(a+="@layer".concat(r.layer.length>0?" ".concat(r.layer):""," {")),a+=r.css,t&&(a+="}"),r.media&&(a+="}"),r.supports&&(a+="}"),(n=r.sourceMap)&&"u">typeof btoa&&(a+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(n))))," */")),o.styleTagTransform(a,e,o.options)},remove:function(){var o;null===(o=e).parentNode||o.parentNode.removeChild(o)}}}},113(o){o.exports=function(o,e){if(e.styleSheet)e.styleSheet.cssText=o;else{for(;e.firstChild;)e.removeChild(e.firstChild);e.appendChild(document.createTextNode(o))}}},579(o,e,r){var a=r(72),t=r.n(a),n=r(825),i=r.n(n),d=r(659),l=r.n(d),x=r(56),c=r.n(x),p=r(540),s=r.n(p),u=r(113),g=r.n(u),f=r(475),v={};v.styleTagTransform=g(),v.setAttributes=c(),v.insert=l().bind(null,"head"),v.domAPI=i(),v.insertStyleElement=s(),t()(f.A,v),f.A&&f.A.locals&&f.A.locals}}]);