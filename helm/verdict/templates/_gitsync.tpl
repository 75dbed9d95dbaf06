{{/*
The git-sync container. Arguments: root (the chart context) and mode:
  native  - an init container with restartPolicy: Always (a native sidecar, Kubernetes >= 1.29):
            its startup probe passes once the first sync is done, and only then does kubelet
            start the daemon;
  once    - an init container that syncs once and exits (--one-time), for older clusters;
  sidecar - a regular container that keeps syncing after "once".
git-sync publishes each commit as a new worktree and swaps the symlink /git/current to it; the
daemon reads /git/current/<subPath> and follows the swap.
*/}}
{{- define "verdict.gitSyncContainer" -}}
{{- $root := .root }}
{{- $mode := .mode }}
{{- $g := $root.Values.gitSync }}
- name: {{ if eq $mode "once" }}git-sync-init{{ else }}git-sync{{ end }}
  image: {{ include "verdict.gitSyncImage" $root }}
  imagePullPolicy: {{ $g.image.pullPolicy }}
  {{- if eq $mode "native" }}
  restartPolicy: Always
  {{- end }}
  args:
    - --repo={{ $g.repo }}
    - --ref={{ $g.ref }}
    - --root={{ include "verdict.gitRoot" $root }}
    - --link=current
    - --depth={{ $g.depth | int64 }}
    - --sync-timeout={{ $g.syncTimeout }}
    {{- if eq $mode "once" }}
    - --one-time
    {{- else }}
    - --period={{ $g.period }}
    - --max-failures={{ $g.maxFailures | int64 }}
    - --http-bind=:{{ $g.httpPort | int64 }}
    {{- end }}
    {{- if $g.sshSecret }}
    - --ssh
    - --ssh-key-file=/etc/git-secret/ssh
    - --ssh-known-hosts=true
    - --ssh-known-hosts-file=/etc/git-secret/known_hosts
    {{- end }}
    {{- range $g.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  {{- if $g.credentialsSecret }}
  env:
    - name: GITSYNC_USERNAME
      valueFrom:
        secretKeyRef:
          name: {{ $g.credentialsSecret }}
          key: username
    - name: GITSYNC_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ $g.credentialsSecret }}
          key: password
  {{- end }}
  {{- if ne $mode "once" }}
  ports:
    - name: git-sync
      containerPort: {{ $g.httpPort }}
      protocol: TCP
  {{- end }}
  {{- if eq $mode "native" }}
  # 5xx until the first sync is done: holds the daemon back until its policies are there.
  startupProbe:
    httpGet:
      path: /
      port: git-sync
    periodSeconds: 2
    failureThreshold: 150
  {{- end }}
  {{- if ne $mode "once" }}
  livenessProbe:
    httpGet:
      path: /
      port: git-sync
    periodSeconds: 10
    failureThreshold: 3
  {{- end }}
  resources:
    {{- toYaml $g.resources | nindent 4 }}
  securityContext:
    {{- toYaml $g.securityContext | nindent 4 }}
  volumeMounts:
    - name: git
      mountPath: {{ include "verdict.gitRoot" $root }}
    # HOME: git writes its config there; the root filesystem is read-only.
    - name: git-sync-home
      mountPath: /tmp
    {{- if $g.sshSecret }}
    - name: git-secret
      mountPath: /etc/git-secret
      readOnly: true
    {{- end }}
{{- end }}
