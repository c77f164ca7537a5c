<#
.SYNOPSIS
    Removes the aiscout agent (Intune Win32 uninstall command).

.DESCRIPTION
    Stops and deletes the service "aiscout-agent" and removes %ProgramFiles%\aiscout. The
    configuration and state in %ProgramData%\aiscout stay unless -RemoveData is given, so a
    reinstall keeps the node key and any spooled sightings. Browser policies written by
    install.ps1 -SetBrowserDnsPolicies are removed with -RemoveBrowserDnsPolicies.
#>
[CmdletBinding()]
param(
    [switch]$RemoveData,
    [switch]$RemoveBrowserDnsPolicies
)

Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'

$ServiceName = 'aiscout-agent'
$ProgramDir = Join-Path $env:ProgramFiles 'aiscout'
$DataDir = Join-Path $env:ProgramData 'aiscout'

$service = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
if ($service) {
    if ($service.Status -ne 'Stopped') {
        Stop-Service -Name $ServiceName -Force
        $service.WaitForStatus('Stopped', [TimeSpan]::FromSeconds(30))
    }
    & sc.exe delete $ServiceName | Out-Null
    if ($LASTEXITCODE -ne 0) {
        Write-Error "aiscout uninstall: sc.exe delete $ServiceName failed ($LASTEXITCODE)" -ErrorAction Continue
        exit 1
    }
}

if (Test-Path -LiteralPath $ProgramDir) { Remove-Item -LiteralPath $ProgramDir -Recurse -Force }
if ($RemoveData -and (Test-Path -LiteralPath $DataDir)) { Remove-Item -LiteralPath $DataDir -Recurse -Force }

if ($RemoveBrowserDnsPolicies) {
    foreach ($key in 'HKLM:\SOFTWARE\Policies\Google\Chrome', 'HKLM:\SOFTWARE\Policies\Microsoft\Edge') {
        Remove-ItemProperty -Path $key -Name 'DnsOverHttpsMode' -ErrorAction SilentlyContinue
    }
    Remove-Item -Path 'HKLM:\SOFTWARE\Policies\Mozilla\Firefox\DNSOverHTTPS' -Recurse -ErrorAction SilentlyContinue
}

Write-Output "aiscout agent removed$(if ($RemoveData) { ', with its data' } else { "; data kept in $DataDir" })"
exit 0
