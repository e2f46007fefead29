"""Where `umamba` does its work: this computer, or a `umamba serve` GPU server (Qt-free, no torch, no umamba).

    target = ComputeTarget.fromSettings(qt.QSettings())     # "Compute on" kept in Slicer's settings
    report = checkConnection(target)                          # the "Test connection" button: /healthz + token
    models = serverModels(target)                            # ModelInfo of each model on the server
    SegmentationOptions(compute=target)                      # Segment runs `umamba predict --server URL`

The module already runs every heavy step as a `umamba` command line in a background process; against a server the
same commands get `--server URL`, and the token travels in the UMAMBA_TOKEN environment variable (a command line
is visible to every user of the computer in the process list). The `umamba` client needs neither torch nor
nnU-Net, so remote mode works in a Slicer where only the extension is installed.
"""

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

from .Errors import UserFacingError
from .ModelInfo import ModelInfo

SETTINGS_KEYS = {"serverUrl": "UMambaSegmentation/ServerURL", "token": "UMambaSegmentation/ServerToken"}
TOKEN_ENVIRONMENT_VARIABLE = "UMAMBA_TOKEN"


@dataclass
class ComputeTarget:
    serverUrl: str = ""  # empty: this computer
    token: str = ""

    @property
    def isRemote(self):
        return bool(self.serverUrl.strip())

    def describe(self):
        return f"server {self.serverUrl}" if self.isRemote else "this computer"

    def arguments(self):
        """What the `umamba` command line gets: `--server URL` for a server, nothing for this computer."""
        return ["--server", self.serverUrl.strip()] if self.isRemote else []

    def environment(self, base=None):
        """The environment of the `umamba` process (None: inherit this process's, unchanged).

        The client needs only Python's standard library, so the umamba source the extension carries goes on
        PYTHONPATH: a Slicer where the dependencies were never installed still segments and trains on a server."""
        if not self.isRemote:
            return None
        env = dict(os.environ if base is None else base)
        env[TOKEN_ENVIRONMENT_VARIABLE] = self.token.strip()
        client = carriedClientPath()
        if client:
            paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
            env["PYTHONPATH"] = os.pathsep.join([client] + [p for p in paths if p != client])
        return env

    @classmethod
    def fromSettings(cls, settings):
        """From a QSettings-like object (value(key, default))."""
        return cls(**{field: str(settings.value(key, "") or "") for field, key in SETTINGS_KEYS.items()})

    def save(self, settings):
        for field, key in SETTINGS_KEYS.items():
            settings.setValue(key, getattr(self, field))


def carriedClientPath():
    """The `src` folder of the umamba package the extension carries (None when it carries none)."""
    from .DependencyInstaller import findBundledPackage

    bundle = findBundledPackage(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(bundle, "src") if bundle else None


@dataclass
class ConnectionReport:
    ok: bool
    message: str
    version: str = ""
    gpus: tuple = ()


def _get(target, path, withToken, timeout):
    url = target.serverUrl.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    headers = {"Authorization": f"Bearer {target.token.strip()}"} if withToken else {}
    with urllib.request.urlopen(urllib.request.Request(url + path, headers=headers), timeout=timeout) as response:
        return json.loads(response.read())


def checkConnection(target, timeout=10):
    """Reach the server, check it is a umamba server, and that the token is accepted."""
    if not target.isRemote:
        return ConnectionReport(True, "Computing on this computer.")
    try:
        health = _get(target, "/healthz", False, timeout)
    except urllib.error.HTTPError as exc:
        return ConnectionReport(False, f"{target.serverUrl} is not a umamba server (/healthz answered {exc.code}).")
    except (urllib.error.URLError, OSError) as exc:
        return ConnectionReport(False, f"Cannot reach {target.serverUrl}: {getattr(exc, 'reason', exc)}. Check the "
                                       "address and that `umamba serve` runs there.")
    except ValueError:
        health = None
    if not isinstance(health, dict) or health.get("service") != "umamba":
        return ConnectionReport(False, f"{target.serverUrl} is not a umamba server.")
    version, gpus = str(health.get("version")), tuple(health.get("gpus") or ())
    try:
        _get(target, "/models", True, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return ConnectionReport(False, f"The server (umamba {version}) does not accept this token.", version, gpus)
        return ConnectionReport(False, f"The server answered {exc.code} to the token check.", version, gpus)
    except (urllib.error.URLError, OSError) as exc:
        return ConnectionReport(False, f"The connection broke: {getattr(exc, 'reason', exc)}", version, gpus)
    where = f"GPUs {', '.join(gpus)}" if gpus else "no GPU (one job at a time)"
    return ConnectionReport(True, f"Connected: umamba {version}, {where}, {health.get('queued', 0)} job(s) waiting.",
                            version, gpus)


def serverModels(target, timeout=30):
    """ModelInfo of every model on the server (`folder` is None: the model lives on the server)."""
    try:
        cards = _get(target, "/models", True, timeout)["models"]
    except urllib.error.HTTPError as exc:
        raise UserFacingError(f"The server refused the model list ({exc.code}).",
                              "Check the server URL and token in 'Compute on', then Test connection.") from None
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        raise UserFacingError(f"Cannot read the model list of {target.serverUrl} ({exc}).",
                              "Test the connection in 'Compute on'.") from None
    return [modelInfoFromCard(card) for card in cards]


def modelInfoFromCard(card):
    labels = sorted((int(v), str(n)) for n, v in (card.get("labels") or {}).items()
                    if isinstance(v, int) and v != 0)
    configuration = str(card.get("configuration") or "3d_fullres")
    return ModelInfo(None, str(card["name"]), labels, list(card.get("channel_names") or []), configuration,
                     2 if configuration.startswith("2d") else 3, list(card.get("folds") or ["all"]),
                     str(card.get("trainer") or ""), card)
