"""A --model that is neither a folder nor a backbone: one Hub request, one line."""

import pytest

from hf_fusion.app.cli import main


class _Response:
    def __init__(self, status_code):
        self.status_code = status_code


class _Session:
    def __init__(self, answer):
        self.answer, self.urls = answer, []

    def get(self, url, **kwargs):
        self.urls.append(url)
        if isinstance(self.answer, Exception):
            raise self.answer
        return _Response(self.answer)


@pytest.mark.parametrize("answer, message", [
    (ConnectionError("[Errno -2] Name or service not known"), "the Hub cannot be reached"),
    (404, "the Hub has no model repo of that name"),
])
def test_mistyped_folder_is_one_line_after_one_request(tmp_path, monkeypatch, capsys, answer, message):
    import huggingface_hub.utils
    import transformers

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    session = _Session(answer)
    monkeypatch.setattr(huggingface_hub.utils, "get_session", lambda: session)

    def no_download(*args, **kwargs):
        if not kwargs.get("local_files_only"):
            raise AssertionError("from_pretrained went to the Hub (with its retries)")
        raise OSError("not in the cache")

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", no_download)
    code = main(["evaluate", "--model", "out/crepe-fusion-2-5", "--task", "synth_pitch", "--out", "eval"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("hf-fusion evaluate: error: --model out/crepe-fusion-2-5: no such folder here, and ")
    assert message in err[0]
    from huggingface_hub import constants

    assert session.urls == [f"{constants.ENDPOINT}/api/models/out/crepe-fusion-2-5"]
    assert not (tmp_path / "eval").exists()


def test_save_model_needs_model(tmp_path, capsys):
    study = tmp_path / "layerwise.csv"
    study.write_text("layer,task,accuracy,std\n1,a,0.5,0\n")
    assert main(["select", "--study", str(study), "--save-model", str(tmp_path / "fused"), "--out", str(tmp_path)]) == 2
    assert "--save-model needs --model" in capsys.readouterr().err
