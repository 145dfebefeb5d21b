# Beam docs › Ephemeral Files and Images › Directories; the docs' fragment runs in a @function that first writes two files into ./tmp/waveforms, and prints the URL.
from pathlib import Path

from beam import Output, function


@function()
def save_waveforms():
    Path("./tmp/waveforms").mkdir(parents=True, exist_ok=True)
    Path("./tmp/waveforms/left.txt").write_text("left channel")
    Path("./tmp/waveforms/right.txt").write_text("right channel")

    # Generate a public URL for a directory
    file_path = "./tmp/waveforms"
    output = Output(path=file_path)
    output.save()

    # Returns https://app.beam.cloud/output/id/abe0c95a-2cd1-40b3-bace-9225f2c79c6d
    output_url = output.public_url()
    return output_url


if __name__ == "__main__":
    print(save_waveforms.remote())
