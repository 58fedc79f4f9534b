#!/usr/bin/env bash
# Put AdvExplorer in the desktop's application menu and make *.advx projects open with it.
#
#     bash packaging/linux/install-desktop.sh [APP]            # for you (~/.local/share)
#     sudo bash packaging/linux/install-desktop.sh --system [APP]   # for everyone (/usr/local/share)
#     bash packaging/linux/install-desktop.sh --uninstall [--system]
#
# APP is the advexplorer executable the menu entry starts: by default the built bundle
# (dist/advexplorer/advexplorer), else `advexplorer` on PATH (e.g. .venv/bin/advexplorer).
# Installs the .desktop entry (with Exec pointing at APP), the icon in every hicolor size
# and the MIME type for AdvExplorer projects, then refreshes the desktop's caches.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

prefix="${XDG_DATA_HOME:-$HOME/.local/share}"
uninstall=0
app=""
for argument in "$@"; do
  case "$argument" in
    --system) prefix=/usr/local/share ;;
    --uninstall) uninstall=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) app="$argument" ;;
  esac
done

desktop_file="$prefix/applications/advexplorer.desktop"
mime_file="$prefix/mime/packages/advexplorer.xml"

refresh() {
  command -v update-mime-database >/dev/null && update-mime-database "$prefix/mime" || true
  command -v update-desktop-database >/dev/null && update-desktop-database -q "$prefix/applications" || true
  command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t -f "$prefix/icons/hicolor" || true
}

if [[ $uninstall == 1 ]]; then
  rm -f "$desktop_file" "$mime_file"
  find "$prefix/icons/hicolor" -path '*/apps/advexplorer.*' -delete 2>/dev/null || true
  refresh
  echo "Removed AdvExplorer's menu entry, icons and project file type from $prefix"
  exit 0
fi

if [[ -z "$app" ]]; then
  if [[ -x "$root/dist/advexplorer/advexplorer" ]]; then app="$root/dist/advexplorer/advexplorer"
  elif command -v advexplorer >/dev/null; then app="$(command -v advexplorer)"
  else
    echo "install-desktop.sh: no advexplorer found; build it (bash packaging/build.sh) or give its path" >&2
    exit 2
  fi
fi
app="$(cd "$(dirname "$app")" && pwd)/$(basename "$app")"
[[ -x "$app" ]] || { echo "install-desktop.sh: $app is not an executable" >&2; exit 2; }

mkdir -p "$prefix/applications" "$prefix/mime/packages"
# Exec and TryExec name the executable by absolute path (a bundle is not on PATH);
# a path with spaces is quoted as the Desktop Entry specification requires.
sed -e "s|^Exec=advexplorer |Exec=\"$app\" |" -e "s|^TryExec=advexplorer$|TryExec=$app|" \
  "$here/advexplorer.desktop" > "$desktop_file"
chmod 0644 "$desktop_file"
if command -v desktop-file-validate >/dev/null; then desktop-file-validate "$desktop_file"; fi
install -m 0644 "$here/advexplorer-mime.xml" "$mime_file"
( cd "$root/packaging/icons" && find hicolor -type f -name 'advexplorer.*' ) | while read -r icon; do
  install -D -m 0644 "$root/packaging/icons/$icon" "$prefix/icons/$icon"
done
refresh
echo "Installed AdvExplorer ($app) into $prefix: menu entry, icons, *.advx project type"
