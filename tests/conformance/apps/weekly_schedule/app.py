# Beam docs › Scheduled Jobs › Run Scheduled Jobs (unchanged).
from beam import schedule


@schedule(when="@weekly", name="weekly-task")
def task():
    print("Hi, from your weekly scheduled task!")
